"""The probe-baseline benchmark on a generated registry: the card's test split, table, JSON, card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from models.card import ModelCard
from tests.training.helpers import CLASSES, make_image_folder
from training.data import list_files, sha256_of_files

BENCH = Path(__file__).resolve().parents[2] / "bench" / "probe_baseline.py"


def _bench():
    spec = importlib.util.spec_from_file_location("probe_baseline", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """One histology card over a generated folder, its last 4 images per class as test split."""
    data = make_image_folder(tmp_path / "data", per_class=12)
    test_files = [f for f in list_files(data).files if int(Path(f).stem.split("_")[1]) >= 8]
    card = ModelCard(
        name="tiny-histology", modality="histology", arch="tf_efficientnet_lite0",
        classes=list(CLASSES), input_size=64, mean=[0.5] * 3, std=[0.5] * 3,
        preprocessing="resize", weights_file="model.safetensors", sha256="0" * 64,
        code_version="test", created="2026-01-01T00:00:00+00:00",
        data={"source": "unused", "sources": [{"source": str(data), "format": "folder",
                                               "images": 36}]},
        split={"seed": 0, "test_files": test_files, "test_sha256": sha256_of_files(test_files)},
        metrics={"n": 12, "accuracy": 0.5, "balanced_accuracy": 0.5})
    (tmp_path / "weights" / card.name).mkdir(parents=True)
    card.write(tmp_path / "weights" / card.name)
    return tmp_path / "weights"


def test_bench_probes_the_cards_test_split_and_writes_the_card(registry: Path, tmp_path: Path,
                                                               capsys) -> None:
    out = tmp_path / "probe.json"
    sha_before = ModelCard.read(registry / "tiny-histology").sha256
    assert _bench().main(["--weights-dir", str(registry), "--modalities", "histology,mri",
                          "--write-cards", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "FAIL" in printed and "mri" in printed and "skipped" in printed
    result = json.loads(out.read_text())
    row = result["models"][0]
    assert row["probe"]["n"] == 12 and row["probe"]["n_train"] == 24
    assert row["probe_balanced_accuracy"] >= 0.9 and row["passes"] is False
    assert "brain-tumour" in result["skipped"] and row["task"] == "lung-cancer"
    card = ModelCard.read(registry / "tiny-histology")
    assert card.metrics["probe"]["C"] == row["probe"]["C"] and card.sha256 == sha_before
    assert card.metrics["balanced_accuracy"] == 0.5


def test_bench_refuses_a_card_whose_test_files_are_not_in_its_data(registry: Path,
                                                                   tmp_path: Path) -> None:
    folder = registry / "tiny-histology"
    raw = json.loads((folder / "card.json").read_text())
    raw["split"]["test_files"][0] = "alpha/missing.png"
    (folder / "card.json").write_text(json.dumps(raw))
    out = tmp_path / "probe.json"
    assert _bench().main(["--weights-dir", str(registry), "--modalities", "histology",
                          "--out", str(out)]) == 1
    assert "not in its data" in json.loads(out.read_text())["skipped"]["lung-cancer"]
