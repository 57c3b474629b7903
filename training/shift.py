"""Acquisition shifts: what changes when an image comes from another scanner, export or copy.

The staged sets each came through one pipeline (the chest X-rays, for one, as 224 px squashed
images upsampled to 256), so a model can learn that pipeline's sharpness, framing or contrast
as if it were disease. Each shift maps ``(N, 3, S, S)`` uint8 model views to new uint8 views of
the same shape; ``bench/robustness.py`` scores every shipped model and its linear probe on the
shifted test split, a stand-in for data from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F
from torchvision.transforms.v2.functional import gaussian_blur

from training.augment import jpeg_roundtrip, sharpen

__all__ = ["SHIFTS", "apply_shift"]


def _float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255.0)


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _sharpened(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def shift(images: torch.Tensor) -> torch.Tensor:
        return _uint8(sharpen(_float(images), torch.full((len(images),), factor)))
    return shift


def _blurred(images: torch.Tensor) -> torch.Tensor:
    return _uint8(gaussian_blur(_float(images), [5, 5], [1.0, 1.0]))


def _half_resolution(images: torch.Tensor) -> torch.Tensor:
    """Down to half the side (antialiased) and back up: a lower-resolution source."""
    x, side = _float(images), images.shape[-1]
    small = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)
    return _uint8(F.interpolate(small, size=(side, side), mode="bilinear", align_corners=False))


def _wider(images: torch.Tensor, ratio: float = 1.3) -> torch.Tensor:
    """Stretched ``ratio`` times in width, centre-cropped: an image kept at its original landscape
    aspect where the training copies were squashed to a square."""
    side = images.shape[-1]
    width = round(side * ratio)
    x = F.interpolate(_float(images), size=(side, width), mode="bilinear", antialias=True)
    left = (width - side) // 2
    return _uint8(x[..., left:left + side])


def _contrast(images: torch.Tensor, factor: float = 1.3) -> torch.Tensor:
    """Contrast around each image's mean grey level, times ``factor``."""
    x = _float(images)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return _uint8(((x - mean) * factor + mean).clamp_(0, 1))


def _jpeg(images: torch.Tensor, quality: int = 30) -> torch.Tensor:
    """Re-encoded as JPEG at ``quality`` (Pillow, as the staged sets were at quality 90)."""
    return torch.stack([jpeg_roundtrip(image, quality) for image in images])


SHIFTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sharpen x2": _sharpened(2.0),
    "sharpen x4": _sharpened(4.0),
    "blur sigma 1": _blurred,
    "half resolution": _half_resolution,
    "wider aspect x1.3": _wider,
    "contrast x1.3": _contrast,
    "JPEG quality 30": _jpeg,
}


def apply_shift(name: str, images: torch.Tensor) -> torch.Tensor:
    """``images`` (uint8 ``(N, 3, S, S)``) under the named shift of :data:`SHIFTS`."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; choose from {', '.join(SHIFTS)}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 (N, 3, S, S) images, got {images.dtype} {tuple(images.shape)}")
    return SHIFTS[name](images)
