"""Acquisition shifts: shape and dtype kept, and each changes the image the way its name says."""

from __future__ import annotations

import pytest
import torch

from training.shift import SHIFTS, apply_shift


def _images(n: int = 3, side: int = 64) -> torch.Tensor:
    """Smooth gradients with sharp-edged squares and mild noise: edges to sharpen or soften."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(40, 200, side)
    x = (ramp.view(1, 1, side, 1) + 0 * ramp.view(1, 1, 1, side)).repeat(n, 3, 1, 1)
    x[:, :, 16:40, 20:44] = 30.0
    x += torch.randn(x.shape, generator=g) * 4
    return x.round().clamp(0, 255).to(torch.uint8)


def _detail(images: torch.Tensor) -> float:
    """Mean absolute difference between horizontal neighbours: high-frequency content."""
    x = images.float()
    return float((x[..., 1:] - x[..., :-1]).abs().mean())


@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_shift_keeps_shape_and_dtype_and_changes_the_image(name: str) -> None:
    images = _images()
    out = apply_shift(name, images)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert not torch.equal(out, images)


def test_sharpening_adds_detail_and_blur_or_lower_resolution_remove_it() -> None:
    images = _images()
    base = _detail(images)
    assert base < _detail(apply_shift("sharpen x2", images)) < _detail(apply_shift("sharpen x4", images))
    assert _detail(apply_shift("blur sigma 1", images)) < base
    assert _detail(apply_shift("half resolution", images)) < base


def test_wider_aspect_stretches_columns_only() -> None:
    """An image that varies only from top to bottom is unchanged; the dark square widens."""
    rows = torch.linspace(0, 255, 64).round().to(torch.uint8).view(1, 1, 64, 1).expand(1, 3, 64, 64)
    assert (apply_shift("wider aspect x1.3", rows.contiguous()).int() - rows.int()).abs().max() <= 1
    square = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    square[..., 24:40, 24:40] = 0
    dark = apply_shift("wider aspect x1.3", square)[0, 0] < 100
    assert dark.any(0).sum() > 18 and dark.any(1).sum() == 16


def test_contrast_spreads_grey_levels_around_the_mean() -> None:
    images = _images()
    out = apply_shift("contrast x1.3", images).float()
    assert out.std() > images.float().std() * 1.2
    assert abs(out.mean() - images.float().mean()) < 2


def test_jpeg_stays_close_to_the_image() -> None:
    images = _images()
    difference = (apply_shift("JPEG quality 30", images).float() - images.float()).abs().mean()
    assert 0 < difference < 8


def test_bad_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown shift"):
        apply_shift("rotate", _images())
    with pytest.raises(ValueError, match="uint8"):
        apply_shift("sharpen x2", _images().float())
