"""Small array conversions shared by the raster and DICOM readers."""

from __future__ import annotations

import numpy as np

__all__ = ["finish_rgb", "grey_to_rgb", "robust_range", "scale_to_uint8"]

# Percentiles used to scale high-bit-depth and float grey images to 8 bits.
ROBUST_PERCENTILES: tuple[float, float] = (0.5, 99.5)


def robust_range(values: np.ndarray) -> tuple[float, float]:
    """Return the 0.5th and 99.5th percentiles of the finite values (0, 0 if there are none)."""
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(finite, ROBUST_PERCENTILES)
    return float(lo), float(hi)


def scale_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``lo..hi`` linearly to 0..255 (clipped); a flat range maps to 0, NaN to 0."""
    if not hi > lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.nan_to_num(np.clip(scaled + 0.5, 0, 255), nan=0.0).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """Repeat an (H, W) uint8 image into (H, W, 3)."""
    return np.repeat(grey[:, :, np.newaxis], 3, axis=2)


def finish_rgb(rgb: np.ndarray) -> np.ndarray:
    """Return ``rgb`` as an owned, writeable, C-contiguous uint8 array."""
    return np.require(rgb, np.uint8, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
