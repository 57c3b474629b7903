"""Batch augmentation: shapes, ranges, determinism under the seed, and each option's effect."""

from __future__ import annotations

import pytest
import torch

from training.augment import Augment, normalise
from training.recipes import RECIPES

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _batch() -> torch.Tensor:
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("changes", [
    {"crop_scale": 0.5}, {"gamma_jitter": 0.4}, {"blur": 1.0}, {"auto_augment": "trivial"},
    {"rotation": 20, "hflip": True, "crop_scale": 0.6, "brightness_alpha": 0.2},
])
def test_each_option_changes_the_batch_reproducibly(changes: dict) -> None:
    augment = Augment(RECIPES["default"].override(**{"rotation": 0, "shift": 0, "hflip": False,
                                                     **changes}), MEAN, STD)
    batch = _batch()
    torch.manual_seed(5)
    first = augment(batch)
    torch.manual_seed(5)
    again = augment(batch)
    assert first.shape == batch.shape and torch.equal(first, again)
    assert not torch.allclose(first, normalise(batch, MEAN, STD))
    assert first.min() >= -1 - 1e-5 and first.max() <= 1 + 1e-5


def test_no_options_is_plain_normalisation() -> None:
    plain = RECIPES["default"].override(rotation=0, shift=0, hflip=False)
    assert torch.equal(Augment(plain, MEAN, STD)(_batch()), normalise(_batch(), MEAN, STD))


def test_recipe_rejects_bad_augmentation_values() -> None:
    with pytest.raises(ValueError, match="crop_scale"):
        RECIPES["default"].override(crop_scale=0.0)
    with pytest.raises(ValueError, match="auto_augment"):
        RECIPES["default"].override(auto_augment="rand")
