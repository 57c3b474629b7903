"""``bench/xai_localization.py`` on two real bleeding frames with the shipped endoscopy model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.xai_localization import main
from models.registry import ModelUnavailable, load_for_modality


def test_scores_methods_beside_the_whole_frame_reference(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        loaded = load_for_modality("endoscopy")
    except ModelUnavailable as exc:
        pytest.skip(f"no endoscopy model installed: {exc}")
    out = tmp_path / "loc.json"
    assert main(["--data", str(shared_data), "--limit", "2", "--methods", "gradcam,eigencam",
                 "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["images"] == 2 and set(summary["methods"]) == {"gradcam", "eigencam"}
    assert 0 < summary["whole_frame"]["iou"] < 1
    assert "per_image" not in summary
    printed = capsys.readouterr().out
    eigencam_row = next(line for line in printed.splitlines() if line.startswith("eigencam"))
    assert "0.3386/0.5003" in eigencam_row  # the studies' figure beside ours
    assert "(whole frame)" in printed
    ideal = next(line for line in printed.splitlines() if line.startswith("(ideal "))
    cells = -(-loaded.card.input_size // 32)  # the CAM layer of the shipped nets has stride 32
    assert ideal.startswith(f"(ideal {cells}x{cells} map)")
    assert summary["ideal_map"]["iou"] > summary["whole_frame"]["iou"]


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 1
    assert "shared data not found" in capsys.readouterr().err
