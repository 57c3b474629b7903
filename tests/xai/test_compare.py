from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.registry import load_for_modality
from xai.compare import MULTI_PASS, explain_all, faithfulness, method_groups, score_against_mask


@pytest.fixture(scope="module")
def loaded(tiny_registry: Path):
    return load_for_modality("xray", tiny_registry, device="cpu")


def test_groups_share_one_pass_and_pick_one_scorecam() -> None:
    stages = {"stage3": "layer3", "stage4": "layer4"}
    fast = method_groups(stages, exact_scorecam=False)
    exact = method_groups(stages, exact_scorecam=True)
    assert not set(fast[0]) & set(MULTI_PASS)
    assert {"gradcam", "haycam_plus", "gradcam_stage3", "gradcam_fused"} <= set(fast[0])
    flat_fast = [m for g in fast for m in g]
    flat_exact = [m for g in exact for m in g]
    assert "scorecam_fast" in flat_fast and "scorecam" not in flat_fast
    assert "scorecam" in flat_exact and "scorecam_fast" not in flat_exact
    assert all(len(g) == 1 for g in fast[1:])


def test_explain_all_merges_every_group(loaded) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    steps = []
    result = explain_all(loaded, rgb, on_step=lambda i, n, group: steps.append((i, n, group)))
    groups = method_groups(loaded.arch.stage_layers, exact_scorecam=False)
    assert [s[2] for s in steps] == groups
    assert list(result.maps) == [m for g in groups for m in g]
    for cam in result.maps.values():
        assert cam.map.shape == (64, 64) and np.isfinite(cam.map).all()


def test_score_against_mask_rewards_the_right_place(loaded) -> None:
    from xai.engine import CamMap

    mask = np.zeros((128, 128, 3), dtype=np.uint8)
    mask[0:64, 0:64] = 255  # top-left quarter
    good = np.zeros((64, 64), np.float32)
    good[4:28, 4:28] = 1.0
    bad = np.zeros((64, 64), np.float32)
    bad[40:60, 40:60] = 1.0
    maps = {n: CamMap(n, n, m, 1.0, "layer4", False) for n, m in (("good", good), ("bad", bad))}
    rows = {r["method"]: r for r in score_against_mask(maps, mask, 64)}
    assert rows["good"]["pointing"] == 1.0 and rows["bad"]["pointing"] == 0.0
    assert rows["good"]["iou"] > 0.5 > rows["bad"]["iou"]


def test_faithfulness_curves(loaded) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    result = explain_all(loaded, rgb)
    curves = faithfulness(loaded, rgb, {"gradcam": result.maps["gradcam"]}, result.target_index)
    (curve,) = curves
    assert curve.label == "Grad-CAM"
    assert 0.0 <= curve.deletion_auc <= 1.0 and 0.0 <= curve.insertion_auc <= 1.0
    assert curve.deletion_curve[0] == pytest.approx(result.probabilities[result.target_index],
                                                    abs=1e-4)
