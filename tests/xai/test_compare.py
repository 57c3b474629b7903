from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.registry import load_for_modality
from xai.compare import (
    explain_all,
    faithfulness,
    faithfulness_ranking,
    localisation_ranking,
    method_groups,
    rank_labels,
    score_against_mask,
    step_text,
)
from xai.engine import CamMap
from xai.registry import OWN_PASSES, method_names


@pytest.fixture(scope="module")
def loaded(tiny_registry: Path):
    return load_for_modality("xray", tiny_registry, device="cpu")


def _cam(name: str, array: np.ndarray, flat: bool = False) -> CamMap:
    return CamMap(name, name, array, 1.0, "layer4", flat, grids=((8, 8),))


def test_groups_share_one_pass_and_pick_one_scorecam() -> None:
    stages = {"stage3": "layer3", "stage4": "layer4"}
    fast = method_groups(stages, exact_scorecam=False)
    exact = method_groups(stages, exact_scorecam=True)
    assert not set(fast[0]) & set(method_names(OWN_PASSES))
    assert {"gradcam", "haycam_plus", "gradcam_stage3", "gradcam_fused"} <= set(fast[0])
    flat_fast = [m for g in fast for m in g]
    flat_exact = [m for g in exact for m in g]
    assert "scorecam_fast" in flat_fast and "scorecam" not in flat_fast
    assert "scorecam" in flat_exact and "scorecam_fast" not in flat_exact
    assert all(len(g) == 1 for g in fast[1:]) and ["dt_gradcam"] in fast


def test_progress_text_uses_display_names() -> None:
    groups = method_groups({"stage3": "layer3", "stage4": "layer4"}, exact_scorecam=False)
    texts = [step_text(g) for g in groups]
    assert "Grad-CAM++" in texts[0] and "Grad-CAM (fused stages)" in texts[0]
    assert any("Score-CAM (fast)" in t for t in texts) and any("DT Grad-CAM" in t for t in texts)
    for text in texts:
        assert "scorecam" not in text and "gradcampp" not in text and "_" not in text


def test_explain_all_merges_every_group(loaded) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    steps = []
    result = explain_all(loaded, rgb, on_step=lambda i, n, group: steps.append((i, n, group)))
    groups = method_groups(loaded.arch.stage_layers, exact_scorecam=False)
    assert [s[2] for s in steps] == groups
    assert list(result.maps) == [m for g in groups for m in g]
    for cam in result.maps.values():
        assert cam.map.shape == (64, 64) and np.isfinite(cam.map).all()
        assert cam.grids and all(h <= 64 and w <= 64 for h, w in cam.grids)


def test_rank_labels_share_ties_and_skip_unscored() -> None:
    assert rank_labels([(0.5,), (0.9,), (0.9,), None, (0.1,)]) == ["3", "1=", "1=", "-", "4"]
    assert rank_labels([(0.5, 0.2), (0.5, 0.3)]) == ["2", "1"]  # the second key breaks the tie


def test_mask_ranking_rewards_the_right_place_and_has_reference_rows() -> None:
    mask = np.zeros((128, 128, 3), dtype=np.uint8)
    mask[0:64, 0:64] = 255  # top-left quarter
    good = np.zeros((64, 64), np.float32)
    good[4:28, 4:28] = 1.0
    bad = np.zeros((64, 64), np.float32)
    bad[40:60, 40:60] = 1.0
    ranking = score_against_mask({"good": _cam("good", good), "bad": _cam("bad", bad)}, mask,
                                 target_layer="layer4")
    rows = {r["method"]: r for r in ranking.rows}
    assert rows["good"]["rank"] == "1" and rows["bad"]["rank"] == "2"
    assert ranking.columns == ["IoU", "Dice", "pointing game", "energy share"]
    assert rows["good"]["pointing game"] == 1.0 and rows["bad"]["pointing game"] == 0.0
    assert rows["good"]["IoU"] > 0.5 > rows["bad"]["IoU"]
    assert ranking.best["IoU"] == [0]
    refs = [ranking.rows[i] for i in ranking.references]
    assert [r["method"] for r in refs] == ["(whole frame)", "(ideal 8 x 8 map)"]
    assert refs[0]["IoU"] == pytest.approx(0.25) and refs[1]["IoU"] > rows["good"]["IoU"] - 0.01
    assert all(r["rank"] == "" for r in refs)


def test_a_column_everyone_ties_on_is_not_highlighted() -> None:
    same = {"iou": 0.4, "dice": 0.5, "pointing": 1.0, "energy": 0.3}
    ranking = localisation_ranking({"gradcam": same, "hirescam": same,
                                    "eigencam": {**same, "iou": 0.2}})
    assert [r["rank"] for r in ranking.rows] == ["1=", "1=", "3"]
    assert ranking.best == {"IoU": [0, 1]}  # dice, pointing, energy: all equal, none highlighted
    tied = localisation_ranking({"gradcam": same, "hirescam": same})
    assert tied.best == {} and tied.notes


def test_faithfulness_curves_are_rescaled_and_ranked(loaded) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    result = explain_all(loaded, rgb)
    maps = {"gradcam": result.maps["gradcam"],
            "flat": _cam("flat", np.zeros((64, 64), np.float32), flat=True)}
    labels = []
    curves = faithfulness(loaded, rgb, maps, result.target_index, steps=8,
                          on_step=lambda i, n, label: labels.append(label))
    assert labels == ["Grad-CAM", "flat"]
    scored, flat = curves
    assert flat.deletion is None and math.isnan(flat.insertion_auc)
    assert scored.deletion_curve.shape == scored.insertion_curve.shape == (9,)
    assert scored.deletion.image_score == pytest.approx(scored.insertion.image_score, abs=1e-4)
    ranking = faithfulness_ranking(curves)
    assert ranking.rows[1]["rank"] == "-" and any("flat map" in n for n in ranking.notes)
