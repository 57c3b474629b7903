"""The robustness benchmark on a tiny trained model: every shift, model and probe, both splits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from models.card import ModelCard
from models.registry import load_model
from tests.training.helpers import make_image_folder
from training import evaluate, train
from training.shift import SHIFTS
from training.trust import rebuild_split

BENCH = Path(__file__).resolve().parents[2] / "bench" / "robustness.py"
TINY = ["--arch", "resnet18", "--pretrained", "none", "--input-size", "32", "--batch-size", "8",
        "--ratios", "2:1:1", "--threads", "1", "--schedule", "constant", "--seed", "3",
        "--epochs", "1", "--warmup-epochs", "1"]


def _bench():
    spec = importlib.util.spec_from_file_location("robustness", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ModelCard]:
    """A registry with one tiny histology model trained on generated images."""
    root = tmp_path_factory.mktemp("robustness")
    data = make_image_folder(root / "data", per_class=12, size=48)
    out = root / "weights" / "histo-tiny"
    assert train.main(["--data", str(data), "--modality", "histology", "--out", str(out),
                       "--checkpoint-dir", str(root / "ckpt"), "--default", *TINY]) == 0
    return data, root / "weights", ModelCard.read(out)


def _run(weights: Path, out: Path, *extra: str) -> dict:
    assert _bench().main(["--weights-dir", str(weights), "--modalities", "histology,mri",
                          "--threads", "1", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_test_split_scores_model_and_probe_under_every_shift(trained, tmp_path: Path, capsys) -> None:
    data, weights, card = trained
    result = _run(weights, tmp_path / "r.json")
    printed = capsys.readouterr().out
    assert all(name in printed for name in SHIFTS) and "brain-tumour skipped" in printed
    row = result["models"][0]
    assert row["model"] == card.name and row["split"] == "test"
    assert row["n"] == len(card.split["test_files"])
    assert set(row["shifts"]) == {"none", *SHIFTS}
    # Unshifted, the model scores what evaluate reports on the card's test split.
    expected = evaluate.evaluate(load_model(weights / card.name, device="cpu"), data, split="test")
    assert row["shifts"]["none"]["model"]["balanced_accuracy"] == expected["balanced_accuracy"]
    # The probe separates the generated classes (mean colour) on the unshifted images.
    assert row["shifts"]["none"]["probe"]["balanced_accuracy"] > 0.9


def test_val_split_is_the_rebuilt_validation_split(trained, tmp_path: Path) -> None:
    _, weights, card = trained
    row = _run(weights, tmp_path / "r.json", "--split", "val")["models"][0]
    _, _, split = rebuild_split(card)
    assert row["split"] == "val" and row["n"] == len(split.val) > 0
