"""Heat-map overlays and the side-by-side grid (uint8 RGB arrays; OpenCV colormaps and text).

Works for colour and grey images (X-ray, MRI): grey (H, W) or (H, W, 1) input is repeated to
three channels. Maps in [0, 1] of any size are resized (bilinear) to the image. ``viridis`` and
``cividis`` are the colour maps readable with colour-vision deficiency (cividis was designed
for it); :func:`colorscale` gives any map as a plotly colour scale for colour bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from xai.engine import CamMap

__all__ = [
    "COLORBLIND_SAFE",
    "COLORMAPS",
    "colorize",
    "colorscale",
    "grid",
    "overlay",
    "save_png",
    "threshold_contour",
    "tile",
    "to_rgb",
]

COLORMAPS: dict[str, int] = {
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "cividis": cv2.COLORMAP_CIVIDIS,
}
COLORBLIND_SAFE = ("cividis", "viridis")
"""Perceptually uniform maps that stay ordered for red-green colour-blind readers."""


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) from grey (H, W), (H, W, 1), RGB or RGBA, uint8 or float in [0, 1]."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        scale = 255.0 if img.size and float(np.nanmax(img)) <= 1.0 else 1.0
        img = np.clip(np.nan_to_num(img.astype(np.float32)) * scale, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected a grey or RGB image, got shape {image.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _fit(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32))
    if cam.shape != shape:
        cam = cv2.resize(cam, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(cam, 0.0, 1.0)


def colorize(cam: np.ndarray, cmap: str = "turbo") -> np.ndarray:
    """uint8 RGB (H, W, 3) rendering of a map in [0, 1] with one of :data:`COLORMAPS`."""
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; choose one of {', '.join(COLORMAPS)}")
    cam = _fit(cam, np.asarray(cam).shape[:2])
    bgr = cv2.applyColorMap(np.rint(cam * 255).astype(np.uint8), COLORMAPS[cmap])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colorscale(cmap: str, steps: int = 11) -> list[tuple[float, str]]:
    """The colour map as a plotly colour scale (``steps`` evenly spaced stops), so a colour bar
    shows exactly the colours of the overlay."""
    values = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    colours = colorize(values[None, :], cmap)[0]
    return [(float(v), f"rgb({r},{g},{b})") for v, (r, g, b) in zip(values, colours, strict=True)]


def threshold_contour(cam: np.ndarray, threshold: float | str = "otsu") -> np.ndarray:
    """Bool (H, W) region of a map: ``"otsu"`` or a fraction of the maximum (e.g. 0.5)."""
    from xai.metrics import map_to_mask

    if isinstance(threshold, str):
        return map_to_mask(cam, method=threshold)
    return map_to_mask(cam, method="fraction", fraction=float(threshold))


def overlay(
    image: np.ndarray,
    cam: np.ndarray | CamMap,
    *,
    cmap: str = "turbo",
    alpha: float = 0.45,
    contour: float | str | np.ndarray | None = None,
    contour_color: tuple[int, int, int] = (255, 255, 255),
    contour_width: int = 2,
    covered: np.ndarray | None = None,
) -> np.ndarray:
    """Blend a heat map over ``image``: ``(1 - alpha) * image + alpha * colormap(cam)``.

    ``contour``: None, ``"otsu"``, a fraction of the map maximum, or a bool mask; its outline is
    drawn in ``contour_color``. A flat :class:`CamMap` draws no heat (its map is zeros).
    ``covered``: bool (H, W) of the image, where the map is defined; elsewhere the image is
    left as it is (the part of the image the model never saw).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    rgb = to_rgb(image)
    mask_from_map = None
    if not isinstance(cam, np.ndarray):  # a CamMap
        mask_from_map = cam.mask
        cam = cam.map
    cam = _fit(cam, rgb.shape[:2])
    heat = colorize(cam, cmap)
    out = cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)
    if covered is not None:
        if covered.shape != rgb.shape[:2]:
            covered = _fit(covered.astype(np.float32), rgb.shape[:2]) > 0.5
        np.copyto(out, rgb, where=~covered[:, :, None])
    if contour is not None:
        if isinstance(contour, np.ndarray):
            region = contour
        elif contour == "mask" and mask_from_map is not None:
            region = mask_from_map
        else:
            region = threshold_contour(cam, contour)
        region = _fit(region.astype(np.float32), rgb.shape[:2]) > 0.5
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, contour_color, contour_width)
    return out


def _label(picture: np.ndarray, lines: Sequence[str], height: int) -> np.ndarray:
    header = np.full((height, picture.shape[1], 3), 24, dtype=np.uint8)
    scale = max(0.35, min(0.6, picture.shape[1] / 400))
    y = int(height * 0.42)
    for text in lines:
        cv2.putText(header, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1,
                    cv2.LINE_AA)
        y += int(height * 0.42)
    return np.vstack([header, picture])


def grid(
    image: np.ndarray,
    maps: Mapping[str, CamMap | np.ndarray],
    *,
    cmap: str = "turbo",
    alpha: float = 0.45,
    cols: int = 4,
    contour: float | str | None = None,
    include_input: bool = True,
    tile_size: int = 224,
    gap: int = 4,
) -> np.ndarray:
    """Side-by-side grid of overlays with the method name and time above each tile.

    ``maps``: name -> :class:`CamMap` (label and ``ms`` shown, "flat" when constant) or array.
    The input image comes first when ``include_input``.
    """
    rgb = to_rgb(image)
    tiles: list[tuple[np.ndarray, list[str]]] = []
    if include_input:
        tiles.append((rgb, ["Input", ""]))
    for name, cam in maps.items():
        if not isinstance(cam, np.ndarray):  # a CamMap
            note = (f"{cam.ms:.1f} ms" if cam.ms < 10 else f"{cam.ms:.0f} ms") + (
                "  (flat)" if cam.flat else "")
            tiles.append((overlay(rgb, cam, cmap=cmap, alpha=alpha, contour=contour),
                          [cam.label, note]))
        else:
            tiles.append((overlay(rgb, cam, cmap=cmap, alpha=alpha, contour=contour), [name, ""]))
    return tile(tiles, cols=cols, tile_size=tile_size, gap=gap)


def tile(
    pictures: Sequence[tuple[np.ndarray, Sequence[str]]],
    *,
    cols: int = 4,
    tile_size: int = 224,
    gap: int = 4,
) -> np.ndarray:
    """Pictures of one size side by side, ``cols`` per row, each under its lines of text and
    scaled so that its longer side is ``tile_size``."""
    if not pictures:
        raise ValueError("nothing to draw")
    first = to_rgb(pictures[0][0])
    scale = tile_size / max(first.shape[:2])
    size = (max(1, round(first.shape[1] * scale)), max(1, round(first.shape[0] * scale)))
    header = max(28, tile_size // 6)
    cells = [_label(cv2.resize(to_rgb(t), size, interpolation=cv2.INTER_AREA), lines, header)
             for t, lines in pictures]
    cols = max(1, min(cols, len(cells)))
    rows = -(-len(cells) // cols)
    ch, cw = cells[0].shape[:2]
    canvas = np.full((rows * ch + (rows + 1) * gap, cols * cw + (cols + 1) * gap, 3), 255,
                     dtype=np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        y, x = gap + r * (ch + gap), gap + c * (cw + gap)
        canvas[y:y + ch, x:x + cw] = cell
    return canvas


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write a uint8 RGB array as PNG (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(to_rgb(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
