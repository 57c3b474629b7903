"""The cross-source benchmark: which sibling runs qualify, the table, and the card it writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from models.card import ModelCard
from models.card_text import checks_text

BENCH = Path(__file__).resolve().parents[2] / "bench" / "cross_source.py"
RECIPE = {"arch": "tf_efficientnet_lite0", "epochs": 14, "lr": 4e-4, "sharpen": 4.0, "jpeg": 30,
          "ema": 0.0, "command": "python -m training.train ..."}


def _bench():
    spec = importlib.util.spec_from_file_location("cross_source", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _card(folder: Path, name: str, recipe: dict, sources: list[str], crops: tuple = (),
          **metrics: object) -> None:
    (folder / name).mkdir(parents=True)
    ModelCard(name=name, modality="mri", arch="tf_efficientnet_lite0",
              classes=["glioma", "meningioma", "notumor", "pituitary"], input_size=64,
              mean=[0.5] * 3, std=[0.5] * 3, preprocessing="resize",
              weights_file="model.safetensors", sha256="0" * 64, code_version="abc123",
              created="2026-01-01T00:00:00+00:00", recipe=recipe, test_time_crops=list(crops),
              data={"name": "d", "sources": [{"source": s} for s in sources]},
              metrics={"n": 100, "accuracy": 0.95, **metrics}).write(folder / name)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A shipped MRI card, and runs: one alike but for its data and command (an older code
    version without the ``ema`` field), one with another recipe, one without external data."""
    weights, runs = tmp_path / "weights", tmp_path / "runs"
    _card(weights, "mri-lite0", RECIPE, ["data/a", "data/b"])
    external = {"n": 40, "accuracy": 0.9, "accuracy_ci95": [0.77, 0.96], "balanced_accuracy": 0.88,
                "confusion_matrix": [[10, 0, 0, 0]] * 4, "data": "data/b"}
    alike = {k: v for k, v in RECIPE.items() if k != "ema"} | {"command": "other --data data/a"}
    _card(runs, "mri-cross-a", alike, ["data/a"], crops=(0.9,), external=external)
    _card(runs, "mri-cross-old", RECIPE | {"sharpen": None}, ["data/b"], external=external)
    _card(runs, "mri-plain", RECIPE, ["data/a"])
    return weights, runs


def test_only_runs_of_the_shipped_recipe_with_external_data_qualify(folders, tmp_path, capsys) -> None:
    weights, runs = folders
    out = tmp_path / "cross.json"
    assert _bench().main(["--runs", str(runs), "--weights-dir", str(weights), "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert [r["model"] for r in summary["runs"]] == ["mri-cross-a"]
    row = summary["runs"][0]
    assert (row["trained_on"], row["tested_on"], row["n"], row["accuracy"]) == ("a", "b", 40, 0.9)
    assert row["test_time_crops"] == [0.9]  # the run decides as its own validation chose
    assert summary["skipped"] == {"mri-cross-old": "recipe differs from mri-lite0: sharpen",
                                  "mri-plain": "no external metrics"}
    assert "mri-cross-a" in capsys.readouterr().out
    assert "cross_source" not in ModelCard.read(weights / "mri-lite0").metrics  # not asked to


def test_write_card_puts_the_runs_where_the_models_page_reads_them(folders, tmp_path) -> None:
    weights, runs = folders
    _bench().main(["--runs", str(runs), "--weights-dir", str(weights), "--write-card",
                   "--out", str(tmp_path / "cross.json")])
    card = ModelCard.read(weights / "mri-lite0")
    assert [r["model"] for r in card.metrics["cross_source"]["runs"]] == ["mri-cross-a"]
    assert card.metrics["accuracy"] == 0.95  # the rest of the card is kept
    assert "Same recipe trained on a only, scored on b: 90.0% (n=40), against 95.0% on its own " \
           "test split." in checks_text(card)


def test_no_qualifying_run_is_exit_code_1(folders, tmp_path) -> None:
    weights, runs = folders
    (runs / "mri-cross-a" / "card.json").unlink()
    assert _bench().main(["--runs", str(runs), "--weights-dir", str(weights), "--write-card",
                          "--out", str(tmp_path / "cross.json")]) == 1
    assert "cross_source" not in ModelCard.read(weights / "mri-lite0").metrics
