"""Trust signals: the k-NN feature guard, the feature hook, test-time views and uncertainty."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from models.trust import (
    ALTERED_CROP,
    FeatureGuard,
    capture_features,
    centre_crop,
    inference_views,
    normalised_entropy,
    uncertainty_of,
)


def _cluster(n: int, centre: torch.Tensor, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return centre + 0.05 * torch.randn(n, len(centre), generator=generator)


def test_guard_threshold_lets_the_chosen_share_of_validation_through() -> None:
    centre = torch.ones(16)
    guard = FeatureGuard.fit(_cluster(200, centre, 0), _cluster(100, centre, 1), k=5,
                             quantile=0.9)
    inside = guard.in_distribution(_cluster(100, centre, 1))
    assert 0.85 <= float(inside.float().mean()) <= 0.95
    far = torch.zeros(16)
    far[0] = 1.0  # another direction: far after L2 normalisation
    assert not guard.in_distribution(_cluster(20, far, 2)).any()
    assert guard.score(_cluster(5, centre, 3)).max() < guard.score(_cluster(5, far, 4)).min()


def test_guard_keeps_a_seeded_sample_of_the_reference() -> None:
    train, val = _cluster(300, torch.ones(8), 0), _cluster(50, torch.ones(8), 1)
    first = FeatureGuard.fit(train, val, max_reference=64, seed=3)
    again = FeatureGuard.fit(train, val, max_reference=64, seed=3)
    assert first.reference.shape == (64, 8)
    assert torch.equal(first.reference, again.reference) and first.threshold == again.threshold
    with pytest.raises(ValueError, match="N >= k"):
        FeatureGuard(torch.ones(3, 8), k=5)


def _two_classes(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A tight class 0 and a spread-out class 1 along two directions, with their labels."""
    generator = torch.Generator().manual_seed(seed)
    tight = torch.eye(16)[0] + 0.02 * torch.randn(n, 16, generator=generator)
    spread = torch.eye(16)[1] + 0.3 * torch.randn(n, 16, generator=generator)
    return torch.cat([tight, spread]), torch.arange(2).repeat_interleave(n)


def test_per_class_thresholds_flag_each_class_at_the_chosen_rate() -> None:
    """One threshold for a tight and a spread class flags the spread one far more often; the
    per-class thresholds flag each at about the chosen rate."""
    (train, _), (val, val_classes) = _two_classes(0, 300), _two_classes(1, 200)
    test, test_classes = _two_classes(2, 400)
    single = FeatureGuard.fit(train, val, quantile=0.9)
    per_class = FeatureGuard.fit(train, val, val_classes=val_classes, num_classes=2, quantile=0.9)
    assert per_class.class_thresholds[0] < single.threshold < per_class.class_thresholds[1]
    one_rule = 1 - single.in_distribution(test).float()
    own_rule = 1 - per_class.in_distribution(test, test_classes).float()
    assert one_rule[test_classes == 1].mean() > 2 * one_rule[test_classes == 0].mean()
    for c in (0, 1):
        assert 0.04 <= float(own_rule[test_classes == c].mean()) <= 0.18
    assert per_class.threshold_for(1) == per_class.class_thresholds[1]
    with pytest.raises(ValueError, match="predicted classes"):
        per_class.in_distribution(test)


def test_a_class_with_too_few_validation_images_keeps_the_global_threshold() -> None:
    (train, _), (val, val_classes) = _two_classes(0, 100), _two_classes(1, 40)
    val_classes[:35] = 2  # class 0 keeps 5 images, class 2 gets 35
    guard = FeatureGuard.fit(train, val, val_classes=val_classes, num_classes=3, min_per_class=30)
    assert guard.class_thresholds[0] == guard.threshold
    assert guard.class_thresholds[1] != guard.threshold != guard.class_thresholds[2]


def test_capture_features_removes_its_hook_even_on_error() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    with capture_features(model, "3") as captured:
        model(torch.randn(4, 3, 2, 2))
    assert captured[0].shape == (4, 6)
    with pytest.raises(RuntimeError), capture_features(model, "3"):
        raise RuntimeError("boom")
    assert not model[3]._forward_pre_hooks


def test_capture_features_ignores_other_threads_on_a_shared_model() -> None:
    """Sessions share one model: a forward another thread runs meanwhile (say, an explanation
    of another image) must not become this prediction's features."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    with capture_features(model, "3") as captured:
        other = threading.Thread(target=lambda: model(torch.randn(7, 3, 2, 2)))
        other.start()
        other.join()
        model(torch.randn(1, 3, 2, 2))
    assert [c.shape[0] for c in captured] == [1]


def test_inference_views_are_the_image_a_crop_and_two_brightness_shifts() -> None:
    x = torch.rand(1, 3, 40, 40)
    views = inference_views(x)
    assert views.shape == (4, 3, 40, 40)
    assert torch.equal(views[0], x[0])
    assert torch.equal(views[1], centre_crop(x, ALTERED_CROP)[0])
    assert torch.allclose(views[2] - x[0], views[0] - views[3])
    assert float((views[2] - x[0]).mean()) > 0


def test_centre_crop_keeps_the_middle_and_resizes_back() -> None:
    x = torch.zeros(1, 1, 40, 40)
    x[..., 10:30, 10:30] = 1.0  # a bright square filling the middle half
    crop = centre_crop(x, 0.5)
    assert crop.shape == x.shape and bool((crop == 1.0).all())
    assert float(centre_crop(x, 0.9).mean()) > float(x.mean())


def test_decision_crops_come_first_and_each_image_keeps_its_own_views() -> None:
    dark, bright = torch.zeros(1, 3, 20, 20), torch.rand(1, 3, 20, 20) * 5
    views = inference_views(torch.cat([dark, bright]), (0.8,)).view(2, -1, 3, 20, 20)
    # per image: itself, its decision crop, the probing 90 % crop, brighter, darker
    assert views.shape[1] == 5
    assert torch.equal(views[1, 1], centre_crop(bright, 0.8)[0])
    assert torch.equal(views[1, 2], centre_crop(bright, 0.9)[0])
    assert torch.equal(views[0, 3], dark[0])  # a flat image's range is 0: no shift
    step = float(bright.amax() - bright.amin()) * 0.1
    assert torch.allclose(views[1, 3] - bright[0], torch.full_like(bright[0], step))
    assert inference_views(bright, (0.9,)).shape[0] == 4  # the 90 % crop is not run twice
    assert torch.equal(inference_views(bright, (0.9, 0.8), altered=False),
                       torch.cat([bright, centre_crop(bright, 0.9), centre_crop(bright, 0.8)]))


def test_entropy_and_uncertainty_verdict() -> None:
    assert float(normalised_entropy(torch.tensor([[0.25, 0.25, 0.25, 0.25]]))[0]) == pytest.approx(1.0)
    assert float(normalised_entropy(torch.tensor([[1.0, 0.0]]))[0]) == pytest.approx(0.0, abs=1e-6)
    sure = torch.tensor([[0.99, 0.01]] * 4)
    assert not uncertainty_of(sure, 0.5).uncertain
    flipped = torch.tensor([[0.99, 0.01], [0.99, 0.01], [0.4, 0.6], [0.99, 0.01]])
    doubt = uncertainty_of(flipped, 0.5)
    assert doubt.uncertain and doubt.agreement == 0.75
    unsure = uncertainty_of(torch.tensor([[0.6, 0.4]] * 4), 0.5)
    assert unsure.uncertain and unsure.entropy == pytest.approx(
        -(0.6 * math.log(0.6) + 0.4 * math.log(0.4)) / math.log(2))
