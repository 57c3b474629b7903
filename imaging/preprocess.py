"""The preprocessing a model sees, shared by training and inference through one registry.

Each preprocessing is a crop box (the whole frame, or the brain) and what follows on the
cropped pixels (filters, then the resize to the model input); the box is what maps the view
back onto the uploaded image (:class:`imaging.geometry.ViewGeometry`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import cv2
import numpy as np

from .geometry import Box, ViewGeometry

__all__ = [
    "PREPROCESSING",
    "PREPROCESSORS",
    "Preprocessing",
    "WHOLE_IMAGE",
    "brain_box",
    "brain_mri",
    "crop_to_brain",
    "frame_keep",
    "kept_region",
    "mask_frame",
    "preprocess",
    "preprocess_with_geometry",
    "resize",
    "whole_frame",
]

# Grey level (0..255, after a 5x5 Gaussian blur) above which a pixel counts as
# head. Measured on the 1281 staged brain MRIs: Otsu often keeps only the bright
# tumour or skull (it dropped up to 88% of the head); 20 leaves noisy scanner
# backgrounds uncropped (151 images); 35 leaves 62 uncropped and keeps >= 90% of
# the bright (> 60) pixels in all but 11, which lose only the detached skull ring.
BRAIN_THRESHOLD = 35

# Frame furniture of colonoscopy video frames, as fractions of the side of the square view.
# Measured on the staged Kvasir-SEG (polyp) and HyperKvasir lower-GI (no polyp) frames as the
# pixels whose share of black (< 25) or white-grey (text) pixels differs between the two sources
# by more than 0.1: the corners outside the inscribed circle (round vs octagonal field of
# view), the black box in the lower-left corner (x < 0.31, y > 0.67 of the side, with a margin)
# and burned-in dates and ids along the left edge (x < 0.15). In what is left the shares differ
# by at most 0.08 (0.92 before); it keeps 66% of the view and drops on average 7% of a
# Kvasir-SEG polyp's pixels (median 0.7%; more than half for 15 of the 900).
FRAME_FIELD_RADIUS = 0.5
FRAME_BOX = (0.32, 0.65)  # the lower-left box: x below the first, y above the second
FRAME_TEXT_STRIP = 0.16  # the left strip with burned-in text

Preprocessor = Callable[[np.ndarray, int], np.ndarray]


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to (size, size, 3) without keeping the aspect ratio.

    INTER_AREA when the result has fewer pixels than the input, else INTER_LINEAR.
    """
    _check_rgb(rgb)
    height, width = rgb.shape[:2]
    interpolation = cv2.INTER_AREA if size * size < height * width else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=interpolation))


def whole_frame(rgb: np.ndarray) -> Box:
    """The box of the whole image."""
    _check_rgb(rgb)
    return 0, 0, rgb.shape[1], rgb.shape[0]


def brain_box(rgb: np.ndarray) -> Box:
    """The box spanned by the extreme points of the largest bright region.

    grey -> Gaussian blur -> threshold -> erode/dilate -> largest external
    contour -> its extreme left/right/top/bottom points. The whole frame when
    nothing is found.
    """
    _check_rgb(rgb)
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, mask = cv2.threshold(grey, BRAIN_THRESHOLD, 255, cv2.THRESH_BINARY)
    mask = cv2.dilate(cv2.erode(mask, None, iterations=2), None, iterations=2)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return whole_frame(rgb)
    points = max(contours, key=cv2.contourArea).reshape(-1, 2)
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    return int(left), int(top), int(right) + 1, int(bottom) + 1


def _crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    left, top, right, bottom = box
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def crop_to_brain(rgb: np.ndarray) -> np.ndarray:
    """Crop to :func:`brain_box`; the image unchanged when no head is found."""
    return _crop(rgb, brain_box(rgb))


def _smooth_and_resize(
    rgb: np.ndarray, size: int, *, d: int = 9, sigma_color: float = 75, sigma_space: float = 75
) -> np.ndarray:
    return resize(cv2.bilateralFilter(rgb, d, sigma_color, sigma_space), size)


def brain_mri(
    rgb: np.ndarray,
    size: int,
    *,
    d: int = 9,
    sigma_color: float = 75,
    sigma_space: float = 75,
) -> np.ndarray:
    """Crop to the brain, smooth with a bilateral filter, then :func:`resize`."""
    return _smooth_and_resize(crop_to_brain(rgb), size, d=d, sigma_color=sigma_color,
                              sigma_space=sigma_space)


@lru_cache(maxsize=16)
def frame_keep(size: int) -> np.ndarray:
    """``(size, size)`` bool, read-only: the pixels :func:`mask_frame` keeps (inside the inscribed
    circle, outside the lower-left box and the left text strip)."""
    y, x = (np.mgrid[:size, :size] + 0.5) / size
    keep = ((np.hypot(x - 0.5, y - 0.5) <= FRAME_FIELD_RADIUS)
            & ~((x < FRAME_BOX[0]) & (y > FRAME_BOX[1])) & (x >= FRAME_TEXT_STRIP))
    keep.flags.writeable = False
    return keep


def mask_frame(rgb: np.ndarray, size: int) -> np.ndarray:
    """:func:`resize`, then black out the frame furniture of a colonoscopy frame (see
    :func:`frame_keep`), so a model cannot tell its sources apart by the frame instead of the
    mucosa. Every frame gets the same mask, whatever furniture it has."""
    view = resize(rgb, size)
    view[~frame_keep(size)] = 0
    return view


@dataclass(frozen=True)
class Preprocessing:
    """One registered preprocessing: where the view is cut from (``box``) and what is done
    to the cut pixels (``finish``, ending with the resize to ``size x size``)."""

    box: Callable[[np.ndarray], Box]
    finish: Preprocessor


_REGISTRY: dict[str, Preprocessing] = {
    "resize": Preprocessing(whole_frame, resize),
    "brain_mri": Preprocessing(brain_box, _smooth_and_resize),
    "mask_frame": Preprocessing(whole_frame, mask_frame),
}
PREPROCESSORS: Mapping[str, Preprocessing] = MappingProxyType(_REGISTRY)
PREPROCESSING: tuple[str, ...] = tuple(_REGISTRY)
# Preprocessings whose view is the whole image resized (nothing cropped or moved), so a mask or
# a heat map drawn on the original lines up with the view.
WHOLE_IMAGE: tuple[str, ...] = ("resize", "mask_frame")
# The fixed region each masking preprocessing keeps, re-applied by training after its geometric
# augmentation so that training images and inference views are masked alike.
_KEPT: dict[str, Callable[[int], np.ndarray]] = {"mask_frame": frame_keep}


def kept_region(name: str, size: int) -> np.ndarray | None:
    """The ``(size, size)`` bool region preprocessing ``name`` keeps; ``None``: all of it."""
    function = _KEPT.get(name)
    return None if function is None else function(size)


def preprocess_with_geometry(
    rgb: np.ndarray, name: str, size: int
) -> tuple[np.ndarray, ViewGeometry]:
    """The named preprocessing, (size, size, 3) uint8, and where that view lies in ``rgb``."""
    try:
        steps = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSING)}"
        ) from None
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    box = steps.box(rgb)
    view = steps.finish(_crop(rgb, box), int(size))
    return view, ViewGeometry(rgb.shape[0], rgb.shape[1], box, int(size))


def preprocess(rgb: np.ndarray, name: str, size: int) -> np.ndarray:
    """Apply the named preprocessing; returns (size, size, 3) uint8."""
    return preprocess_with_geometry(rgb, name, size)[0]


def _check_rgb(rgb: np.ndarray) -> None:
    if (
        not isinstance(rgb, np.ndarray)
        or rgb.dtype != np.uint8
        or rgb.ndim != 3
        or rgb.shape[2] != 3
    ):
        raise ValueError("expected an (H, W, 3) uint8 image")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError("the image is empty")
