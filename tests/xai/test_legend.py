"""Colour bars, grid sizes and tile notes: what every map carries beside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.xai.conftest import STAGES, TinyNet
from xai import explain_tensor
from xai.engine import CamMap
from xai.legend import colorbar, grid_text, map_notes, with_colorbar
from xai.overlay import colorize


def test_grid_text_names_the_native_grid(tiny: TinyNet) -> None:
    e = explain_tensor(tiny, torch.randn(3, 32, 32), target_layer="layer4", stage_layers=STAGES,
                       methods=["gradcam", "stages", "dt_gradcam"])
    assert e.maps["gradcam"].grids == ((8, 8),) and e.maps["gradcam_stage3"].grids == ((16, 16),)
    assert grid_text(e.maps["gradcam"]) == "8 x 8 map, upsampled to 32 x 32"
    assert grid_text(e.maps["dt_gradcam"]) == "8 x 8 map, upsampled to 32 x 32"
    assert grid_text(e.maps["gradcam_fused"]) == ("mean of 16 x 16 and 8 x 8 maps, upsampled "
                                                  "to 32 x 32")
    unknown = CamMap("x", "x", np.zeros((4, 4), np.float32), 0.0, "l", False)
    assert grid_text(unknown) == ""


@pytest.mark.parametrize("cmap", ["turbo", "inferno"])
def test_colorbar_runs_from_high_at_the_top_to_low(cmap: str) -> None:
    bar = colorbar(cmap, length=100, thickness=10, labels=False)
    assert bar.shape == (100, 10, 3)
    np.testing.assert_array_equal(bar[0, 0], colorize(np.ones((1, 1), np.float32), cmap)[0, 0])
    np.testing.assert_array_equal(bar[-1, 0], colorize(np.zeros((1, 1), np.float32), cmap)[0, 0])
    labelled = colorbar(cmap, length=100, thickness=10)
    assert labelled.shape[0] == 100 and labelled.shape[1] > 10
    assert (labelled[:, 10:] < 128).any()  # the words are drawn


def test_with_colorbar_keeps_the_tile_and_adds_the_bar() -> None:
    tile = np.full((64, 48, 3), 77, np.uint8)
    out = with_colorbar(tile, "jet")
    assert out.shape[0] == 64 and out.shape[1] > 48
    np.testing.assert_array_equal(out[:, :48], tile)


def test_notes_explain_a_flat_map() -> None:
    flat = CamMap("gradcam", "Grad-CAM", np.zeros((8, 8), np.float32), 1.0, "layer4", True)
    (note,) = map_notes(flat, "pneumonia")
    assert "Flat map" in note and "'pneumonia'" in note and "layer4" in note
    fine = CamMap("gradcam", "Grad-CAM", np.ones((8, 8), np.float32), 1.0, "layer4", False)
    assert map_notes(fine, "pneumonia") == []
