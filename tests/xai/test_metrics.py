"""Localisation and faithfulness scores on hand-made masks and maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.xai.conftest import TinyNet
from xai.metrics import (
    CURVE_KINDS,
    MIN_SPAN,
    as_mask,
    baseline_image,
    box_to_mask,
    dice,
    energy_pointing_game,
    iou,
    largest_component,
    localization_scores,
    map_to_mask,
    mask_to_box,
    perturbation_curve,
    pointing_game,
    road_scores,
    target_log_odds,
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


class RedDetector(nn.Module):
    """A two-class model that reads colour, like a bleeding detector: class 0 when the image has
    red, with a large logit scale (so its softmax saturates)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        redness = torch.relu(self.layer4(x)[:, 0] - x[:, 1]).mean(dim=(1, 2))
        return torch.stack([100 * redness, torch.zeros_like(redness)], dim=1)


def _red_patch_image() -> tuple[torch.Tensor, np.ndarray]:
    """A grey image (normalised units) with a red 12 x 12 patch, and a map on the patch."""
    x = torch.full((1, 3, 48, 48), -0.2)
    x[0, 0, 10:22, 26:38] = 1.0
    cam = np.zeros((48, 48), np.float32)
    cam[8:24, 24:40] = 1.0
    cam += np.linspace(0, 0.1, 48, dtype=np.float32)[None, :]  # no ties in the pixel order
    return x, cam


def test_insertion_ranks_a_colour_model_where_rise_saturates() -> None:
    """The bug of the Compare page: from a blurred start, with the softmax probability, a map on
    the lesion and a map pointing away from it both scored ~1."""
    model, (x, cam) = RedDetector().eval(), _red_patch_image()
    away = cam.max() - cam
    rise = [perturbation_curve(model, x, m, 0, "insertion", baseline="blur", score="probability")
            for m in (cam, away)]
    assert rise[0].scores[0] > 0.99 and min(c.raw_auc for c in rise) > 0.95  # saturated
    good, bad = (perturbation_curve(model, x, m, 0, "insertion") for m in (cam, away))
    assert good.informative and good.curve[0] == pytest.approx(0) and good.curve[-1] == 1
    assert good.auc > 0.8 and bad.auc < 0.2
    deleted = [perturbation_curve(model, x, m, 0, "deletion") for m in (cam, away)]
    assert deleted[0].curve[0] == 1 and deleted[0].curve[-1] == pytest.approx(0)
    assert deleted[0].auc < 0.2 < 0.8 < deleted[1].auc


def test_a_baseline_that_keeps_the_evidence_is_not_informative() -> None:
    model, (x, cam) = RedDetector().eval(), _red_patch_image()
    x[0, 0] = 1.0  # red everywhere: a blurred copy is exactly as red
    curve = perturbation_curve(model, x, cam, 0, "insertion", baseline="blur")
    assert not curve.informative and np.isnan(curve.auc)
    assert curve.baseline_score == pytest.approx(curve.image_score, abs=0.5)


def test_a_baseline_that_scores_the_target_higher_than_the_image_is_not_informative() -> None:
    """Class 1 of the red detector ("not red") on the red-patch image: the grey baseline holds
    more evidence for it than the image, so a curve rescaled between the two turns upside down."""
    model, (x, cam) = RedDetector().eval(), _red_patch_image()
    for kind in CURVE_KINDS:
        curve = perturbation_curve(model, x, cam, 1, kind)
        assert curve.baseline_score - curve.image_score > MIN_SPAN["log_odds"]
        assert not curve.informative and np.isnan(curve.auc)


def test_log_odds_and_baselines() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    p = torch.softmax(logits, 1)[:, 0]
    torch.testing.assert_close(target_log_odds(logits, 0), torch.log(p / (1 - p)))
    single = torch.tensor([[1.5]])
    assert float(target_log_odds(single, 1)) == 1.5 and float(target_log_odds(single, 0)) == -1.5
    x = torch.randn(3, 16, 16)
    assert float(baseline_image(x, "mean").abs().max()) == 0
    assert float(baseline_image(x, "blur").std()) < float(x.std())
    with pytest.raises(ValueError, match="baseline"):
        baseline_image(x, "noise")


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")
def test_curves_and_road_run_on_a_cnn(tiny: TinyNet) -> None:
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cam = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    deletion = perturbation_curve(tiny, x, cam, 1, "deletion", steps=8, batch_size=4,
                                  score="probability")
    insertion = perturbation_curve(tiny, x, cam, 1, "insertion", steps=8, batch_size=4,
                                   score="probability")
    assert deletion.scores.shape == (9,) and insertion.scores.shape == (9,)
    with torch.no_grad():
        p = torch.softmax(tiny(x), 1)[0, 1].item()
        p0 = torch.softmax(tiny(torch.zeros_like(x)), 1)[0, 1].item()
    assert deletion.image_score == pytest.approx(p, abs=1e-5)
    assert insertion.image_score == pytest.approx(p, abs=1e-5)
    assert deletion.baseline_score == pytest.approx(p0, abs=1e-5)
    with pytest.raises(ValueError, match="map shape"):
        perturbation_curve(tiny, x, cam[:8], 1, "deletion")
    road = road_scores(tiny, x, cam, target=1, percentiles=(20, 80))
    assert set(road) == {"morf", "lerf", "combined"}
    assert all(np.isfinite(v) for v in road.values())
