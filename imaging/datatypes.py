"""Options and result types shared by the loaders."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import ImageInputError

__all__ = [
    "MAX_ASPECT",
    "MIN_SIDE",
    "Limits",
    "LoadedImage",
    "Window",
    "check_frame",
    "check_shape",
    "normalize_window",
]

# Below 16 px a side there is nothing left for a model (inputs are upscaled to >= 224 px)
# nor for a heat map to point at.
MIN_SIDE = 16
# No scan or photograph is 20 times longer than wide; such a strip squashes to nothing when
# resized to a square model input or displayed.
MAX_ASPECT = 20


@dataclass(frozen=True)
class Limits:
    """Upper bounds that protect against oversized files and decompression bombs.

    ``max_pixels`` bounds width*height of the decoded frame and, for DICOM, also
    rows*columns*frames*samples of the whole data set, all checked before decoding.
    """

    max_bytes: int = 64 * 2**20
    max_pixels: int = 60_000_000

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("Limits.max_bytes and Limits.max_pixels must be positive")

    def check_bytes(self, size: int) -> None:
        """Raise ``too_large`` when a file of ``size`` bytes exceeds the limit."""
        if size > self.max_bytes:
            raise ImageInputError(
                "too_large",
                f"the file is too large ({size / 2**20:.1f} MiB; the limit is "
                f"{self.max_bytes / 2**20:.1f} MiB)",
            )

    def check_pixels(self, width: int, height: int, *, values: int = 1) -> None:
        """Check a frame's size and ``values`` (frames*samples) before it is decoded.

        Raises ``not_an_image`` for a zero width or height, ``too_large`` when
        width*height or width*height*values exceeds ``max_pixels``.
        """
        if width <= 0 or height <= 0:
            raise ImageInputError("not_an_image", "the image has zero width or height")
        if width * height > self.max_pixels or width * height * values > self.max_pixels:
            raise ImageInputError(
                "too_large",
                f"the image is too large to decode ({width}x{height} pixels"
                f"{f' x {values}' if values > 1 else ''}; the limit is "
                f"{self.max_pixels:,} pixels)",
            )


@dataclass(frozen=True)
class Window:
    """A DICOM VOI window (centre and width, in modality units such as HU)."""

    center: float
    width: float


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image ready for display and preprocessing.

    ``rgb`` is (H, W, 3) uint8, C-contiguous. ``meta`` holds only technical,
    de-identified fields (never names, IDs, dates, UIDs or institutions).
    """

    rgb: np.ndarray
    meta: dict[str, object] = field(default_factory=dict)
    suggested_modality: str | None = None

    def __post_init__(self) -> None:
        rgb = self.rgb
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(
                f"LoadedImage.rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}"
            )
        if not rgb.flags.c_contiguous:
            raise ValueError("LoadedImage.rgb must be C-contiguous")


def normalize_window(window: Window | None) -> Window | None:
    """``window`` with float fields; ``bad_option`` unless the centre is finite and width > 0."""
    if window is None:
        return None
    try:
        center, width = float(window.center), float(window.width)
    except (AttributeError, TypeError, ValueError):
        center, width = math.nan, math.nan
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ImageInputError("bad_option", "the window needs a finite centre and a width above 0")
    return Window(center, width)


def check_frame(frame: int | None, frame_count: int | None = None) -> None:
    """Raise ``bad_option`` unless ``frame`` is None or a valid index (< ``frame_count`` if given)."""
    if frame is None:
        return
    if isinstance(frame, bool) or not isinstance(frame, int | np.integer) or frame < 0:
        raise ImageInputError("bad_option", "frame must be a whole number of 0 or more")
    if frame_count is not None and frame >= frame_count:
        raise ImageInputError(
            "bad_option",
            f"frame {frame} does not exist: the file has {frame_count} "
            f"frame{'s' if frame_count != 1 else ''} (0 to {frame_count - 1})",
        )


def check_shape(width: int, height: int) -> None:
    """Raise ``bad_shape`` beyond ``MAX_ASPECT``:1, else ``too_small`` for a side under ``MIN_SIDE``."""
    shorter, longer = sorted((width, height))
    if longer > MAX_ASPECT * shorter:
        raise ImageInputError(
            "bad_shape",
            f"the image is a thin strip ({width}x{height} pixels); its longer side may be at "
            f"most {MAX_ASPECT} times its shorter side",
        )
    if shorter < MIN_SIDE:
        raise ImageInputError(
            "too_small",
            f"the image is too small ({width}x{height} pixels); each side needs at least "
            f"{MIN_SIDE} pixels",
        )
