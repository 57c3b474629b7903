"""The report carries the card's headline sentence (test accuracy with 95% CI and n, probe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.registry import load_for_modality
from tests.conftest import register_tiny_model
from xai import explain_loaded
from xai.report import build_report_content, report_html


def test_report_has_the_headline_row(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "xray", metrics={"accuracy": 0.8, "n": 10,
                                                   "probe": {"accuracy": 0.7, "n": 10}})
    loaded = load_for_modality("xray", tmp_path, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    explanation = explain_loaded(loaded, rgb, methods=["gradcam"])
    content = build_report_content(explanation, loaded.card, {}, {})
    sentence = "test accuracy 80.0% (95% CI 49.0-94.3%, n=10); linear-probe baseline 70.0%"
    assert ("Headline figures", sentence) in content.model
    assert sentence in report_html(content)
