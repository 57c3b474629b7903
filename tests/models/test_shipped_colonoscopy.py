"""The shipped colonoscopy model end to end on frames of its own test split: the prediction CLI
with ``--task``, and the Predict page (AppTest) with the task chosen in its box."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.registry import ModelUnavailable, default_weights_dir, find_card
from tests.app.session import button, open_page, upload

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> dict[str, list[Path]]:
    """Four polyp and four non-polyp frames of the shipped model's test split."""
    try:
        _, card = find_card("endoscopy", task="colonoscopy-polyp")
    except ModelUnavailable as exc:
        pytest.skip(f"no colonoscopy model installed: {exc}")
    files = card.split["test_files"]
    polyp = [f for f in files if f.startswith("kvasir-seg/")][:4]
    other = [f for f in files if f.startswith("hyperkvasir-lower-gi/")][::25][:4]
    return {"polyp": [shared_data / f for f in polyp], "other": [shared_data / f for f in other]}


def test_the_cli_reads_polyp_frames_with_the_colonoscopy_model(frames) -> None:
    labels = {}
    for kind, paths in frames.items():
        for path in paths:
            done = subprocess.run([sys.executable, "-m", "models.predict", str(path), "--task",
                                   "colonoscopy-polyp", "--json"], cwd=REPO, capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            result = json.loads(done.stdout)
            assert result["model"] == "colonoscopy-lite0" and result["task"] == "colonoscopy-polyp"
            labels[path.name] = (kind, result["label"])
    correct = sum((label == "polyp") == (kind == "polyp") for kind, label in labels.values())
    assert correct >= 7, labels  # test accuracy ~98%: at most one of eight wrong


def test_the_predict_page_shows_a_polyp_and_its_best_localiser(frames, monkeypatch) -> None:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(default_weights_dir()))
    at = upload(open_page("predict"), frames["polyp"][0].name, frames["polyp"][0].read_bytes())
    at.selectbox(key="predict-modality").set_value("endoscopy").run()
    at.selectbox(key="predict-task").set_value("colonoscopy-polyp").run()
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value == "polyp"
    _, card = find_card("endoscopy", task="colonoscopy-polyp")
    best = card.metrics.get("localization", {}).get("best", {}).get("method")
    if best:  # the card names the method that found the polyps best: it is selected first
        assert at.multiselect(key="predict-methods").value[0] == best
    assert at.get("plotly_chart")  # the maps' viewer
