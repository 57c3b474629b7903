"""Trust signals: the k-NN feature guard, the feature hook, test-time views and uncertainty."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from torch import nn

from models.trust import (
    FeatureGuard,
    capture_features,
    normalised_entropy,
    tta_views,
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


def test_tta_views_are_the_image_a_crop_and_two_brightness_shifts() -> None:
    x = torch.rand(1, 3, 40, 40)
    views = tta_views(x)
    assert views.shape == (4, 3, 40, 40)
    assert torch.equal(views[0], x[0])
    assert not torch.equal(views[1], x[0])
    assert torch.allclose(views[2] - x[0], views[0] - views[3])
    assert float((views[2] - x[0]).mean()) > 0


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
