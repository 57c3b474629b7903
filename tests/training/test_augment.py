"""Batch augmentation: shapes, ranges, determinism under the seed, and each option's effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.augment import Augment, normalise
from training.recipes import RECIPES

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _batch() -> torch.Tensor:
    return torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("changes", [
    {"crop_scale": 0.5}, {"gamma_jitter": 0.4}, {"blur": 1.0}, {"sharpen": 4.0}, {"jpeg": 30},
    {"auto_augment": "trivial"},
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


def test_sharpen_matches_torchvision_per_image() -> None:
    """One factor per image, each image exactly as ``adjust_sharpness`` with that factor."""
    from torchvision.transforms.v2.functional import adjust_sharpness

    from training.augment import sharpen

    x = _batch().float() / 255
    factors = torch.tensor([0.25, 1.0, 4.0, 2.0, 0.5, 1.5])
    out = sharpen(x, factors)
    for image, factor, result in zip(x, factors.tolist(), out, strict=True):
        assert torch.allclose(result, adjust_sharpness(image, factor), atol=1e-6)
    assert torch.allclose(out[1], x[1], atol=1e-6) and not torch.allclose(out[2], x[2])


def test_recipe_rejects_bad_augmentation_values() -> None:
    with pytest.raises(ValueError, match="crop_scale"):
        RECIPES["default"].override(crop_scale=0.0)
    with pytest.raises(ValueError, match="sharpen"):
        RECIPES["default"].override(sharpen=0.5)
    with pytest.raises(ValueError, match="jpeg"):
        RECIPES["default"].override(jpeg=100)
    with pytest.raises(ValueError, match="auto_augment"):
        RECIPES["default"].override(auto_augment="rand")


def test_masked_recipes_stay_masked_after_augmentation() -> None:
    """Shifts, flips, crops and brightness move or lift the black furniture mask; it is laid
    again at the end, so every training image is masked where inference masks the view."""
    from imaging.preprocess import frame_keep

    recipe = RECIPES["default"].override(preprocessing="mask_frame", rotation=20, shift=0.1,
                                         hflip=True, vflip=True, crop_scale=0.6,
                                         brightness_alpha=0.2, brightness_beta=0.2, blur=0.5)
    batch = _batch()
    torch.manual_seed(0)
    out = Augment(recipe, MEAN, STD)(batch)
    black = normalise(torch.zeros(1, 3, 1, 1, dtype=torch.uint8), MEAN, STD)
    masked = torch.from_numpy(~frame_keep(32))
    assert torch.equal(out[:, :, masked], black.view(1, 3, 1).expand(6, 3, int(masked.sum())))
    kept = out[:, :, ~masked]
    assert not torch.allclose(kept, normalise(batch, MEAN, STD)[:, :, ~masked])


def test_training_views_are_the_inference_views(shared_data: Path, tmp_path: Path) -> None:
    """decode_images (training, evaluation, trust) and model_view (the app, the CLIs) give the
    same masked view of a real colonoscopy frame."""
    from imaging import load_path
    from models.predict import model_view
    from models.registry import load_model
    from tests.conftest import register_tiny_colonoscopy
    from training.data import decode_images

    register_tiny_colonoscopy(tmp_path)
    loaded = load_model(tmp_path / "colonoscopy-tiny", device="cpu")
    for path in (sorted((shared_data / "hyperkvasir-lower-gi" / "normal-cecum").glob("*.jpg"))[0],
                 sorted((shared_data / "kvasir-seg" / "images").glob("*.jpg"))[0]):
        trained = decode_images([path], "mask_frame", loaded.card.input_size)[0]
        served = model_view(loaded, load_path(path).rgb)
        assert np.array_equal(trained.permute(1, 2, 0).numpy(), served)
        assert not served[-2, 2].any()  # the lower-left box is black in both
