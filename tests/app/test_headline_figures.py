"""Home and Models pages show test accuracy with its 95% CI and n, external and probe figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import register_tiny_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def figures_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """mri with a probe baseline, xray with an external figure, histology short of the probe
    rule, nothing for endoscopy."""
    register_tiny_model(tmp_path, "mri", metrics={"accuracy": 0.8, "n": 10,
                                                  "probe": {"accuracy": 0.7, "n": 10}})
    register_tiny_model(tmp_path, "histology", classes=["aca", "n", "scc"], metrics={
        "accuracy": 0.94, "balanced_accuracy": 0.94, "n": 180,
        "probe": {"accuracy": 0.93, "balanced_accuracy": 0.93, "n": 180}})
    register_tiny_model(tmp_path, "xray", metrics={"accuracy": 0.951, "n": 355,
                                                   "external": {"accuracy": 0.91, "n": 200}})
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tmp_path))
    return tmp_path


def test_home_shows_ci_n_external_and_probe(figures_registry: Path) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    table = at.table[0].value.set_index("modality")
    assert table.loc["mri", "test accuracy"] == "80.0%" and table.loc["mri", "95% CI"] == "49.0-94.3%"
    assert table.loc["mri", "test n"] == "10" and table.loc["mri", "linear probe"] == "70.0%"
    assert table.loc["mri", "external"] == "n/a"
    assert table.loc["xray", "95% CI"] == "92.5-97.0%" and table.loc["xray", "external"] == "91.0% (n=200)"
    assert table.loc["histology", "linear probe"] == "93.0% (rule not met)"
    assert (table.loc["endoscopy", "95% CI"] == "-").all()  # both endoscopy tasks untrained
    assert any("Wilson" in c.value for c in at.caption)


def test_models_page_titles_and_cards_carry_the_sentence(figures_registry: Path) -> None:
    at = AppTest.from_file(str(REPO / "pages" / "3_Models.py"), default_timeout=60).run()
    assert not at.exception
    sentence = "test accuracy 80.0% (95% CI 49.0-94.3%, n=10); linear-probe baseline 70.0%"
    assert f"brain MRI for tumours: tiny-mri-resnet18 - {sentence}" in [e.label for e in at.expander]
    assert any(m.value == f"**T{sentence[1:]}.**" for m in at.markdown)


def test_models_page_on_the_shipped_models_words_near_copies_and_counts_reliability_bins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from models.card import ModelCard
    from models.registry import list_cards

    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(REPO / "weights"))
    at = AppTest.from_file(str(REPO / "pages" / "3_Models.py"), default_timeout=120).run()
    assert not at.exception
    shipped = [c for _, c in list_cards(REPO / "weights")
               if isinstance(c, ModelCard) and "twins" in c.metrics]
    assert len(shipped) >= 5
    words = " ".join(m.value for m in at.markdown)
    for card in shipped:
        less = card.metrics["twins"]["model"]["less_alike_half"]
        assert f"least like any training image: {less['accuracy']:.1%} (n={less['n']}" in words
    bins = [json.loads(c.proto.spec)["data"][0] for c in at.get("plotly_chart")
            if "Reliability" in c.proto.spec]
    assert len(bins) == len([c for _, c in list_cards(REPO / "weights")
                             if isinstance(c, ModelCard) and "reliability" in c.metrics])
    for trace in bins:
        assert trace["text"] and all(t.startswith("n=") for t in trace["text"])
