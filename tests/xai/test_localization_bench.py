"""``bench/xai_localization.py``: the bleeding table with the shipped capsule model, and the
polyp table on a tiny colonoscopy model's test split of real Kvasir-SEG masks."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from bench.xai_localization import main
from models.card import ModelCard
from models.registry import ModelUnavailable, find_card, load_model
from tests.conftest import kvasir_test_split, register_tiny_colonoscopy


def test_scores_methods_beside_the_whole_frame_reference(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        loaded = load_model(find_card("endoscopy", task="capsule-bleeding")[0])
    except ModelUnavailable as exc:
        pytest.skip(f"no capsule endoscopy model installed: {exc}")
    out = tmp_path / "loc.json"
    assert main(["--data", str(shared_data), "--tables", "bleeding", "--limit", "2",
                 "--methods", "gradcam,eigencam", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())["bleeding"]
    assert summary["images"] == 2 and set(summary["methods"]) == {"gradcam", "eigencam"}
    assert summary["split"] == "test"  # the trained-on boxes are never scored
    assert set(summary["targets"]) == {"method", "threshold", "iou", "pointing",
                                       "iou_above_whole_frame"}
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


def test_polyp_table_on_the_colonoscopy_model_test_split(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names, split = kvasir_test_split(shared_data, 3)
    register_tiny_colonoscopy(tmp_path, split=split)
    out = tmp_path / "loc.json"
    assert main(["--data", str(shared_data), "--weights-dir", str(tmp_path), "--methods",
                 "gradcam,eigencam", "--out", str(out), "--write-card", "--per-image",
                 "--worst", "2", "--artifacts", str(tmp_path / "art")]) == 0
    results = json.loads(out.read_text())
    polyp = results["polyp"]
    assert [row["file"] for row in polyp["per_image"]] == names  # its test split only
    assert (polyp["region"], polyp["split"], polyp["target"]) == ("mask", "test", "polyp")
    assert 0 < polyp["whole_frame"]["iou"] < polyp["ideal_map"]["iou"] <= 1
    best = polyp["targets"]
    assert best["method"] in {"gradcam", "eigencam"} and best["threshold"] == "otsu"
    assert best["iou_above_whole_frame"]["value"] == pytest.approx(
        polyp["methods"][best["method"]]["iou"] - polyp["whole_frame"]["iou"])
    ious = sorted(row["methods"][best["method"]]["iou"] for row in polyp["per_image"])
    assert [w["iou"] for w in polyp["worst"]] == ious[:2]  # where the maps go wrong, worst first
    for worst in polyp["worst"]:
        drawn = cv2.imread(str(tmp_path / "art" / worst["overlay"]))
        assert drawn.shape == (64, 64, 3)  # on the model's view
    assert "capsule-bleeding" in results["skipped"]["bleeding"]  # no capsule model here
    printed = capsys.readouterr()
    assert f"targets (best by IoU: {best['method']})" in printed.out
    assert "bleeding table skipped" in printed.err
    card = ModelCard.read(tmp_path / "colonoscopy-tiny")
    assert card.metrics["localization"]["best"]["method"] == best["method"]
    assert card.metrics["localization"]["images"] == 3


def test_without_models_every_table_is_skipped_with_the_reason(
        shared_data: Path, tiny_registry: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(shared_data), "--weights-dir", str(tiny_registry),
                 "--out", str(tmp_path / "x.json")]) == 1
    err = capsys.readouterr().err
    assert "polyp table skipped" in err and "colonoscopy for polyps (colonoscopy-polyp)" in err
    assert "error: no table could be scored" in err


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 1
    assert "shared data not found" in capsys.readouterr().err
