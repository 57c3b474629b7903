"""Overlays and grids: colormaps, opacity, contours, grey images, labels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from xai.engine import CamMap
from xai.overlay import colorize, grid, overlay, save_png, to_rgb


def _cam(h: int = 16, w: int = 16) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (h * w / 8)).astype(np.float32)


def test_grey_images_and_sizes() -> None:
    grey = np.full((40, 30), 100, np.uint8)
    assert to_rgb(grey).shape == (40, 30, 3)
    assert to_rgb(grey[:, :, None]).shape == (40, 30, 3)
    assert to_rgb(np.full((4, 4), 0.5, np.float32))[0, 0, 0] == 127
    out = overlay(grey, _cam(), alpha=0.5)  # map resized to the image
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("cmap", ["turbo", "jet", "inferno", "viridis", "cividis"])
def test_colormaps_and_opacity(cmap: str) -> None:
    img = np.zeros((16, 16, 3), np.uint8)
    heat = colorize(_cam(), cmap)
    assert heat.shape == (16, 16, 3)
    np.testing.assert_array_equal(overlay(img, _cam(), cmap=cmap, alpha=0.0), img)
    np.testing.assert_array_equal(overlay(img, _cam(), cmap=cmap, alpha=1.0), heat)
    with pytest.raises(ValueError):
        overlay(img, _cam(), alpha=1.5)


def test_jet_is_red_at_the_peak_and_blue_at_zero() -> None:
    heat = colorize(np.array([[0.0, 1.0]], np.float32), "jet")
    assert heat[0, 0, 2] > 100 and heat[0, 0, 0] < 50  # blue (RGB order)
    assert heat[0, 1, 0] > 100 and heat[0, 1, 2] < 50  # red


def test_heat_only_where_the_map_is_defined() -> None:
    img = np.full((32, 32, 3), 90, np.uint8)
    covered = np.zeros((32, 32), bool)
    covered[8:24, 4:20] = True
    out = overlay(img, cv2.resize(_cam(), (32, 32)), alpha=0.8, covered=covered)
    assert np.array_equal(out[~covered], img[~covered])
    assert (out[covered] != 90).any(axis=1).all()


def test_colour_blind_safe_maps_rise_in_lightness() -> None:
    """cividis and viridis read in order without hue: lightness grows from 0 to 1."""
    from xai.overlay import COLORBLIND_SAFE

    ramp = np.linspace(0, 1, 16, dtype=np.float32)[None, :]
    for cmap in COLORBLIND_SAFE:
        lightness = cv2.cvtColor(colorize(ramp, cmap), cv2.COLOR_RGB2LAB)[0, :, 0].astype(int)
        assert (np.diff(lightness) > 0).all(), cmap
    jet = cv2.cvtColor(colorize(ramp, "jet"), cv2.COLOR_RGB2LAB)[0, :, 0].astype(int)
    assert not (np.diff(jet) > 0).all()  # control: jet's lightness goes up and down


def test_contour_is_drawn() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    cam = cv2.resize(_cam(), (64, 64))
    plain = overlay(img, cam, alpha=0.0)
    outlined = overlay(img, cam, alpha=0.0, contour="otsu", contour_color=(0, 255, 0))
    assert (outlined[:, :, 1] == 255).sum() > 20 and (plain[:, :, 1] == 255).sum() == 0
    mask = np.zeros((64, 64), bool)
    mask[10:20, 10:20] = True
    boxed = overlay(img, cam, alpha=0.0, contour=mask, contour_color=(0, 255, 0))
    assert boxed[10, 15, 1] == 255 and boxed[40, 40, 1] == 0


def test_grid_layout_and_save(tmp_path) -> None:
    maps = {
        name: CamMap(name=name, label=name.upper(), map=_cam(32, 32), ms=1.5, layer="l",
                     flat=False) for name in ("a", "b", "c")
    }
    maps["d"] = CamMap(name="d", label="D", map=np.zeros((32, 32), np.float32), ms=0.1,
                       layer="l", flat=True)
    g = grid(np.full((32, 32), 80, np.uint8), maps, cols=3, tile_size=64)
    assert g.dtype == np.uint8 and g.ndim == 3
    # 5 tiles in 3 columns -> 2 rows; each cell is a header plus a 64 px tile
    header = max(28, 64 // 6)
    assert g.shape[0] == 2 * (64 + header) + 3 * 4 and g.shape[1] == 3 * 64 + 4 * 4
    path = save_png(tmp_path / "sub" / "grid.png", g)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, g)
