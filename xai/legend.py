"""What every map carries beside it: a colour bar, its native grid, and why it may mislead.

A CAM is computed on a coarse grid (7 x 7 for the shipped 224 px models) and upsampled, so a
smooth blob must not be read as a lesion outline: :func:`grid_text` says how coarse the map is.
Each map is scaled to its own [0, 1] range, which the colour bar of :func:`colorbar` shows.
:func:`map_notes` turns a map's flags (flat, DT Grad-CAM's lowered or lost noise) into sentences
for its tile.
"""

from __future__ import annotations

import cv2
import numpy as np

from xai.engine import CamMap
from xai.overlay import colorize, to_rgb

__all__ = ["COLORBAR_CAPTION", "colorbar", "grid_text", "map_notes", "with_colorbar"]

COLORBAR_CAPTION = ("Colour = relevance for the explained class, each map scaled to its own "
                    "range: bottom of the bar = the map's lowest value, top = its highest.")


def grid_text(cam: CamMap) -> str:
    """``"7 x 7 map, upsampled to 224 x 224"``; the fused map names each stage's grid; ``""``
    when the grid is unknown."""
    if not cam.grids:
        return ""
    size = f"{cam.map.shape[0]} x {cam.map.shape[1]}"
    grids = [f"{h} x {w}" for h, w in cam.grids]
    if len(grids) == 1:
        return f"{grids[0]} map, upsampled to {size}"
    return f"mean of {' and '.join(grids)} maps, upsampled to {size}"


def map_notes(cam: CamMap, target_label: str) -> list[str]:
    """Plain sentences a reader needs before trusting this map (empty when nothing is off)."""
    notes = []
    if cam.flat:
        notes.append(f"Flat map: nothing at layer {cam.layer} speaks for '{target_label}' (every "
                     "weighted activation is zero or negative). Empty, not 'everywhere'.")
    kept, sigma = cam.info.get("kept"), cam.info.get("sigma")
    if kept is not None and sigma is not None:
        if kept < 0.5:
            notes.append(f"Only {kept:.0%} of the noisy copies keep the model's answer even at "
                         f"noise {sigma:.1%}: this map mostly explains other answers.")
        elif cam.info.get("halvings", 0) > 0:
            notes.append(f"Noise lowered to {sigma:.1%} of the value range: with more noise the "
                         "model changed its answer on most copies.")
    return notes


def colorbar(cmap: str = "turbo", length: int = 224, thickness: int = 14,
             labels: bool = True) -> np.ndarray:
    """A vertical colour bar (uint8 RGB), high at the top, ``length`` px tall; with ``labels``
    the words "high" and "low" sit to its right on white."""
    ramp = np.linspace(1.0, 0.0, length, dtype=np.float32)[:, None].repeat(thickness, axis=1)
    bar = colorize(ramp, cmap)
    if not labels:
        return bar
    text = np.full((length, 38, 3), 255, dtype=np.uint8)
    for word, y in (("high", 12), ("low", length - 4)):
        cv2.putText(text, word, (3, y), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (40, 40, 40), 1,
                    cv2.LINE_AA)
    return np.hstack([bar, text])


def with_colorbar(tile: np.ndarray, cmap: str = "turbo", gap: int = 4) -> np.ndarray:
    """``tile`` (an overlay) with its colour bar to the right, on white."""
    rgb = to_rgb(tile)
    bar = colorbar(cmap, rgb.shape[0], thickness=max(8, rgb.shape[1] // 16))
    space = np.full((rgb.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.hstack([rgb, space, bar])
