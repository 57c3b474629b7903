"""Near twins: nearest training images, the report by likeness, and the bench on a tiny model."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.card import ModelCard
from tests.training.helpers import make_image_folder
from training import train
from training.twins import COPY_CORRELATION, nearest, twin_report

BENCH = Path(__file__).resolve().parents[2] / "bench" / "twins.py"
TINY = ["--arch", "resnet18", "--pretrained", "none", "--input-size", "32", "--batch-size", "8",
        "--ratios", "2:1:1", "--threads", "1", "--schedule", "constant", "--seed", "3",
        "--epochs", "1", "--warmup-epochs", "1"]


def test_nearest_finds_a_scaled_copy_in_any_block() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(50, 64))
    query = np.stack([3 * reference[17], rng.normal(size=64), reference[42] + 0.01])
    for block in (1, 2, 1024):
        index, similarity = nearest(query, reference, block=block)
        assert index[0] == 17 and similarity[0] == pytest.approx(1.0, abs=1e-5)
        assert index[2] == 42 and similarity[2] > 0.99
        assert similarity[1] < 0.6
    with pytest.raises(ValueError, match="no reference"):
        nearest(query, reference[:0])


def test_report_splits_at_the_median_and_leaves_out_copies() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1])
    similarity = np.array([0.2, 0.3, 0.4, 0.9, 0.97, 0.99])
    correct = np.array([False, False, True, True, True, True])  # right only on the alike ones
    report = twin_report(labels, correct, similarity, labels, np.array([1, 1, 0, 1, 0, 0]))
    model = report["model"]
    assert report["n"] == 6 and report["copies"] == 2 and COPY_CORRELATION == 0.95
    assert model["less_alike_half"]["n"] == 3
    assert model["less_alike_half"]["accuracy"] == pytest.approx(1 / 3)
    assert model["more_alike_half"]["accuracy"] == 1.0 and model["more_alike_half"]["n"] == 3
    assert model["without_copies"]["n"] == 4 and model["without_copies"]["accuracy"] == 0.5
    assert model["all"]["accuracy"] == pytest.approx(4 / 6)
    lo, hi = model["less_alike_half"]["ci95"]
    assert 0 < lo < 1 / 3 < hi < 1
    assert report["nearest_neighbour"]["pixels"]["accuracy"] == 1.0
    assert report["nearest_neighbour"]["features"]["accuracy"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="one entry per test image"):
        twin_report(labels, correct[:3], similarity, labels, labels)


def _bench():
    spec = importlib.util.spec_from_file_location("twins", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_finds_a_planted_copy_and_writes_the_card(tmp_path: Path, capsys) -> None:
    data = make_image_folder(tmp_path / "data", per_class=12, size=48)
    out = tmp_path / "weights" / "histo-tiny"
    assert train.main(["--data", str(data), "--modality", "histology", "--out", str(out),
                       "--checkpoint-dir", str(tmp_path / "ckpt"), "--default", *TINY]) == 0
    card = ModelCard.read(out)
    # A copy of one test image, added to the data after training: it is not a test file, so it
    # is the test image's nearest other image, and the only copy the bench can find.
    planted = card.split["test_files"][0]
    shutil.copy(data / planted, data / Path(planted).parent / "copy_of_a_test_image.png")

    result = tmp_path / "twins.json"
    assert _bench().main(["--weights-dir", str(tmp_path / "weights"), "--modalities",
                          "histology,mri", "--write-cards", "--threads", "1",
                          "--out", str(result)]) == 0
    printed = capsys.readouterr().out
    assert "histo-tiny" in printed and "brain-tumour skipped" in printed
    twins = json.loads(result.read_text())["models"][0]["twins"]
    n = len(card.split["test_files"])
    assert twins["n"] == n and twins["copies"] == 1
    assert twins["similarity"]["p90"] < COPY_CORRELATION  # generated noise: no other look-alikes
    halves = twins["model"]["less_alike_half"]["n"] + twins["model"]["more_alike_half"]["n"]
    assert halves == n and twins["model"]["without_copies"]["n"] == n - 1
    assert twins["model"]["all"]["accuracy"] == pytest.approx(card.metrics["accuracy"])
    assert ModelCard.read(out).metrics["twins"] == twins
