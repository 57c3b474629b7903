"""Where a model's square view lies in the uploaded image, and maps carried back onto it.

Every preprocessing crops the image to a box (the whole frame for ``resize``, the brain for
``brain_mri``) and resizes that box to ``size x size`` without keeping the aspect ratio; filters
in between move no pixel. A map on the view therefore lies on the box of the uploaded image:
:meth:`ViewGeometry.to_image` resamples it there, at the uploaded resolution or on any
uniformly scaled copy of the image (a display capped in size). Outside the box the model saw
nothing, so the map is undefined there (``covered`` is False).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Box", "ViewGeometry", "display_shape"]

Box = tuple[int, int, int, int]
"""``(left, top, right, bottom)`` in image pixels; ``right`` and ``bottom`` are exclusive."""


@dataclass(frozen=True)
class ViewGeometry:
    """The uploaded image's ``height x width``, the ``box`` the view was cut from, and the
    view's side ``size`` (the model input)."""

    height: int
    width: int
    box: Box
    size: int

    def __post_init__(self) -> None:
        left, top, right, bottom = self.box
        if not (0 <= left < right <= self.width and 0 <= top < bottom <= self.height):
            raise ValueError(f"box {self.box} is not inside a {self.width} x {self.height} image")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    @property
    def cropped(self) -> bool:
        """True when the view shows less than the whole image."""
        return self.box != (0, 0, self.width, self.height)

    def box_on(self, shape: tuple[int, int]) -> Box:
        """The box on a copy of the image resized to ``shape`` = (height, width), in whole
        pixels, at least one pixel wide and high."""
        height, width = shape
        sx, sy = width / self.width, height / self.height
        left, top, right, bottom = self.box
        x0, y0 = min(round(left * sx), width - 1), min(round(top * sy), height - 1)
        return (x0, y0, max(x0 + 1, min(width, round(right * sx))),
                max(y0 + 1, min(height, round(bottom * sy))))

    def to_image(
        self, view_map: np.ndarray, shape: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A map on the view (``size x size``, float) placed on the image grid.

        ``shape``: (height, width) of a resized copy of the image to place it on (default: the
        uploaded resolution). Returns (map float32 (H, W), zero outside the box; covered bool
        (H, W), True inside the box). Bilinear resampling, as OpenCV resizes.
        """
        view_map = np.asarray(view_map, dtype=np.float32)
        if view_map.shape != (self.size, self.size):
            raise ValueError(f"expected a {self.size} x {self.size} map, got {view_map.shape}")
        height, width = shape or (self.height, self.width)
        x0, y0, x1, y1 = self.box_on((height, width))
        placed = np.zeros((height, width), dtype=np.float32)
        placed[y0:y1, x0:x1] = cv2.resize(view_map, (x1 - x0, y1 - y0),
                                          interpolation=cv2.INTER_LINEAR)
        covered = np.zeros((height, width), dtype=bool)
        covered[y0:y1, x0:x1] = True
        return placed, covered


    def to_view(self, image_map: np.ndarray) -> np.ndarray:
        """A map on the image (any resolution of it, e.g. a region mask) cut and resized as the
        view was: ``size x size`` float32, area-averaged (a mask's cells hold its share)."""
        image_map = np.asarray(image_map, dtype=np.float32)
        x0, y0, x1, y1 = self.box_on(image_map.shape[:2])
        return cv2.resize(image_map[y0:y1, x0:x1], (self.size, self.size),
                          interpolation=cv2.INTER_AREA)


def display_shape(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) scaled down uniformly so that neither side exceeds ``max_side``
    (unchanged when it already fits or ``max_side`` is None)."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))
