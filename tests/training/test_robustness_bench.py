"""The robustness benchmark on a generated registry: every shift, model and probe, table and JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from tests.conftest import register_tiny_model
from tests.training.helpers import CLASSES, make_image_folder
from training.data import decode_images, list_files, sha256_of_files
from training.shift import SHIFTS

BENCH = Path(__file__).resolve().parents[2] / "bench" / "robustness.py"


def _bench():
    spec = importlib.util.spec_from_file_location("robustness", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_scores_model_and_probe_under_every_shift(tmp_path: Path, capsys) -> None:
    data = make_image_folder(tmp_path / "data", per_class=12, size=64)
    dataset = list_files(data)
    test_files = [f for f in dataset.files if int(Path(f).stem.split("_")[1]) >= 8]
    weights = tmp_path / "weights"
    loaded_card = register_tiny_model(
        weights, "histology", classes=list(CLASSES),
        data={"source": str(data), "sources": [{"source": str(data), "format": "folder"}]},
        split={"seed": 0, "test_files": test_files, "test_sha256": sha256_of_files(test_files)})
    out = tmp_path / "robustness.json"
    assert _bench().main(["--weights-dir", str(weights), "--modalities", "histology,mri",
                          "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in SHIFTS) and "brain-tumour skipped" in printed
    result = json.loads(out.read_text())
    row = result["models"][0]
    assert row["model"] == loaded_card.name and row["n"] == 12
    assert set(row["shifts"]) == {"none", *SHIFTS}

    # The unshifted row is the model's own score on its test files, decoded as the card says.
    from models.registry import load_model
    from training.evaluate import model_probabilities
    from training.metrics import classification_report

    is_test = np.isin(dataset.files, test_files)
    images = decode_images([p for p, t in zip(dataset.paths, is_test, strict=True) if t],
                           loaded_card.preprocessing, loaded_card.input_size)
    probs = model_probabilities(load_model(weights / loaded_card.name, device="cpu"), images)
    expected = classification_report(dataset.labels[is_test], probs, list(CLASSES))
    assert row["shifts"]["none"]["model"]["balanced_accuracy"] == expected["balanced_accuracy"]
    # The probe separates the generated classes (mean colour) on the unshifted images.
    assert row["shifts"]["none"]["probe"]["balanced_accuracy"] > 0.9
