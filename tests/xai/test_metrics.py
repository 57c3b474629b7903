"""Localisation and faithfulness scores on hand-made masks and maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.xai.conftest import TinyNet
from xai.metrics import (
    as_mask,
    box_to_mask,
    deletion_auc,
    dice,
    energy_pointing_game,
    insertion_auc,
    iou,
    largest_component,
    localization_scores,
    map_to_mask,
    mask_to_box,
    pointing_game,
    road_scores,
)


def test_iou_and_dice_known_values() -> None:
    a = box_to_mask((0, 0, 4, 4), (10, 10))  # 16 px
    b = box_to_mask((2, 2, 6, 6), (10, 10))  # 16 px, overlap 2x2 = 4
    assert iou(a, b) == pytest.approx(4 / 28)
    assert dice(a, b) == pytest.approx(8 / 32)
    assert iou(a, a) == 1.0 and dice(a, a) == 1.0
    c = box_to_mask((6, 6, 10, 10), (10, 10))
    assert iou(a, c) == 0.0 and dice(a, c) == 0.0
    empty = np.zeros((10, 10), bool)
    assert iou(empty, empty) == 1.0 and dice(empty, empty) == 1.0
    assert iou(a, empty) == 0.0


def test_boxes_and_masks() -> None:
    m = np.zeros((8, 10), bool)
    m[2:5, 3:7] = True
    assert mask_to_box(m) == (3, 2, 7, 5)
    assert mask_to_box(np.zeros((3, 3), bool)) is None
    np.testing.assert_array_equal(box_to_mask((3, 2, 7, 5), (8, 10)), m)
    np.testing.assert_array_equal(as_mask((3, 2, 7, 5), (8, 10)), m)
    np.testing.assert_array_equal(as_mask(m.astype(np.uint8) * 255, (8, 10)), m)
    np.testing.assert_array_equal(as_mask(np.dstack([m * 255] * 3).astype(np.uint8), (8, 10)), m)
    with pytest.raises(ValueError, match="does not match"):
        as_mask(m, (9, 10))
    two = np.zeros((10, 10), bool)
    two[0:2, 0:2] = True
    two[5:9, 5:9] = True
    big = largest_component(two)
    assert big.sum() == 16 and big[6, 6] and not big[0, 0]


def test_map_to_mask_variants() -> None:
    cam = np.zeros((10, 10), np.float32)
    cam[2:4, 2:4] = 1.0
    cam[6:9, 6:9] = 0.6
    assert map_to_mask(cam, "fraction", fraction=0.8).sum() == 4
    assert map_to_mask(cam, "fraction", fraction=0.5).sum() == 13
    assert map_to_mask(cam, "topk", top_percent=4).sum() == 4
    otsu = map_to_mask(cam, "otsu")
    assert otsu.sum() == 13
    assert map_to_mask(cam, "otsu", largest=True).sum() == 9
    assert not map_to_mask(np.zeros((5, 5)), "otsu").any()
    with pytest.raises(ValueError, match="unknown threshold"):
        map_to_mask(cam, "median")


def test_pointing_and_energy() -> None:
    cam = np.zeros((10, 10), np.float32)
    cam[1, 1] = 1.0
    cam[5:7, 5:7] = 0.5  # mass 2.0 inside the box below, 1.0 outside
    gt = (4, 4, 8, 8)
    assert not pointing_game(cam, gt)
    assert pointing_game(cam, gt, tolerance=4)
    assert pointing_game(cam, (0, 0, 3, 3))
    assert energy_pointing_game(cam, gt) == pytest.approx(2 / 3)
    assert energy_pointing_game(np.zeros((10, 10)), gt) == 0.0
    assert not pointing_game(np.zeros((10, 10)), gt)


def test_localization_scores_box_and_mask() -> None:
    cam = np.zeros((20, 20), np.float32)
    cam[5:10, 5:10] = 1.0
    gt = box_to_mask((5, 5, 15, 10), (20, 20))  # 50 px, map region 25 px inside it
    s = localization_scores(cam, gt, region="box")
    assert s.iou == pytest.approx(0.5) and s.dice == pytest.approx(2 * 25 / 75)
    assert s.pointing == 1.0 and s.energy == pytest.approx(1.0)
    ring = np.zeros((20, 20), np.float32)
    ring[2:18, 2:18] = 1.0
    ring[4:16, 4:16] = 0.0
    by_mask = localization_scores(ring, box_to_mask((2, 2, 18, 18), (20, 20)), region="mask")
    by_box = localization_scores(ring, box_to_mask((2, 2, 18, 18), (20, 20)), region="box")
    assert by_box.iou == pytest.approx(1.0) and by_mask.iou == pytest.approx(112 / 256)
    assert set(s.as_dict()) == {"iou", "dice", "pointing", "energy"}


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
def test_deletion_insertion_and_road_run(tiny: TinyNet) -> None:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cam = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    d_auc, d_curve = deletion_auc(tiny, x, cam, target=1, steps=8, batch_size=4)
    i_auc, i_curve = insertion_auc(tiny, x, cam, target=1, steps=8, batch_size=4)
    assert d_curve.shape == (9,) and i_curve.shape == (9,)
    assert 0 <= d_auc <= 1 and 0 <= i_auc <= 1
    with torch.no_grad():
        p = torch.softmax(tiny(x), 1)[0, 1].item()
    assert d_curve[0] == pytest.approx(p, abs=1e-5) and i_curve[-1] == pytest.approx(p, abs=1e-5)
    with torch.no_grad():
        p0 = torch.softmax(tiny(torch.zeros_like(x)), 1)[0, 1].item()
    assert d_curve[-1] == pytest.approx(p0, abs=1e-5)
    road = road_scores(tiny, x, cam, target=1, percentiles=(20, 80))
    assert set(road) == {"morf", "lerf", "combined"}
    assert all(np.isfinite(v) for v in road.values())
