"""The viewer: every class in one pass, maps cached per (image, model, method, class), panels
on the uploaded image at its resolution (pictures capped for display), linked axes."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from models.registry import LoadedModel, load_for_modality, load_model
from tests.conftest import register_tiny_model
from xai import explain_loaded, explain_view
from xai.overlay import colorscale
from xai.viewer import (
    EVERY_CLASS,
    MODEL_VIEW,
    ORIGINAL,
    MapCache,
    Style,
    linked_figure,
    make_canvas,
    render,
    sheet,
    target_indices,
)

METHODS = ["gradcam", "hirescam", "haycam_plus"]


def _head(size: int) -> np.ndarray:
    """A bright textured ellipse on black, off centre (the MRI crop keeps only the ellipse)."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    cv2.ellipse(image, (size * 3 // 5, size // 2), (size // 4, size // 3), 0, 0, 360,
                (150, 150, 150), -1)
    texture = np.random.default_rng(1).integers(0, 60, image.shape, dtype=np.uint8)
    return np.where(image > 0, image + texture, 0).astype(np.uint8)


@pytest.fixture(scope="module")
def mri(tiny_registry: Path) -> LoadedModel:
    return load_for_modality("mri", tiny_registry, device="cpu")


@pytest.fixture(scope="module")
def cropping(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A tiny MRI model whose card crops to the brain, as the shipped MRI model does."""
    root = tmp_path_factory.mktemp("crop")
    register_tiny_model(root, "mri", name="tiny-mri-crop", preprocessing="brain_mri")
    return load_model(root / "tiny-mri-crop", device="cpu")


def _decoded(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_every_class_in_one_pass_equals_one_class_at_a_time(mri: LoadedModel) -> None:
    rgb = _head(160)
    view = explain_loaded(mri, rgb, methods=METHODS).image
    classes = range(len(mri.card.classes))
    together = explain_view(mri, view, methods=METHODS, targets=list(classes))
    for target, explanation in zip(classes, together, strict=True):
        alone = explain_loaded(mri, rgb, methods=METHODS, target=target)
        assert explanation.target_index == target
        np.testing.assert_allclose(explanation.probabilities, alone.probabilities, atol=1e-5)
        for name in METHODS:
            np.testing.assert_allclose(explanation.maps[name].map, alone.maps[name].map,
                                       atol=1e-4)
    assert not np.allclose(together[0].maps["gradcam"].map, together[1].maps["gradcam"].map)
    predicted = explain_view(mri, view, methods=["gradcam"], targets=[None])[0]
    assert predicted.target_index == predicted.predicted_index


def test_the_cache_computes_only_what_is_missing(mri: LoadedModel) -> None:
    cache, rgb = MapCache(), _head(120)
    first = cache.explain(mri, "img", rgb, ["gradcam"], [0])
    assert cache.passes == 1
    again = cache.explain(mri, "img", rgb, ["gradcam"], [0])
    assert cache.passes == 1 and again[0].maps["gradcam"] is first[0].maps["gradcam"]
    every = cache.explain(mri, "img", rgb, ["gradcam", "hirescam"], [0, 1, 2, 3])
    assert cache.passes == 2  # three new classes and a new method: one batched pass
    assert every[0].maps["gradcam"] is first[0].maps["gradcam"]
    assert [e.target_index for e in every] == [0, 1, 2, 3]
    cache.explain(mri, "other image", rgb, ["gradcam"], [0])
    assert cache.passes == 3  # keyed by image


def test_panels_at_uploaded_resolution_capped_only_for_display(cropping: LoadedModel) -> None:
    """A 2000 x 2000 upload: axes span its 2000 pixels, pictures are 1024 px unless asked."""
    cache, rgb = MapCache(), _head(2000)
    explanations = cache.explain(cropping, "big", rgb, METHODS, [0])
    for side, expected in ((1024, 1024), (None, 2000)):
        rows, extent = cache.panels(cropping, "big", rgb, explanations, {}, mode=ORIGINAL,
                                    outline=True, max_side=side)
        assert [len(row) for row in rows] == [1 + len(METHODS)]
        for panel in rows[0]:
            assert panel.shape == (expected, expected)
            assert _decoded(panel.uri).shape == (expected, expected, 3)
        figure = linked_figure(rows, extent)
        assert figure["layout"]["xaxis"]["range"] == [-0.5, 1999.5]
        assert figure["layout"]["yaxis"]["range"] == [1999.5, -0.5]
        images = [trace for trace in figure["data"] if trace["type"] == "image"]
        assert len(images) == 4 and all(t["dx"] * expected == 2000 for t in images)
    assert extent == (2000, 2000) and all(p.box == rows[0][0].box for p in rows[0])
    assert len(figure["layout"]["shapes"]) == 4  # the model's view outlined on every panel
    assert cache.passes == 1  # display changes computed nothing


def test_outside_the_crop_the_image_is_untouched(cropping: LoadedModel) -> None:
    rgb = _head(600)
    explanation = MapCache().explain(cropping, "k", rgb, ["gradcam"], [0])[0]
    view, geometry = MapCache().view(cropping, "k", rgb)
    canvas = make_canvas(rgb, view, geometry, ORIGINAL, 300)
    drawn = render(canvas, explanation.maps["gradcam"], Style("cividis", 0.7), outline=True)
    x0, y0, x1, y1 = geometry.box_on(drawn.shape[:2])
    outside = np.ones(drawn.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert outside.any() and np.array_equal(drawn[outside], canvas.picture[outside])
    assert not np.array_equal(drawn[~outside], canvas.picture[~outside])
    on_view = make_canvas(rgb, view, geometry, MODEL_VIEW, 300)
    assert on_view.picture.shape == view.shape and not on_view.geometry.cropped


def test_a_flat_map_draws_no_heat(mri: LoadedModel) -> None:
    explanation = MapCache().explain(mri, "k", _head(100), ["gradcam"], [0])[0]
    flat = explanation.maps["gradcam"].__class__(
        name="gradcam", label="Grad-CAM", map=np.zeros((64, 64), np.float32), ms=0.0,
        layer="layer4", flat=True)
    view, geometry = MapCache().view(mri, "k", _head(100))
    canvas = make_canvas(_head(100), view, geometry, ORIGINAL, None)
    assert np.array_equal(render(canvas, flat, Style(), outline=True), canvas.picture)


def test_every_class_rows_and_linked_axes(mri: LoadedModel) -> None:
    cache, rgb = MapCache(), _head(300)
    explanations = cache.explain(mri, "k", rgb, METHODS, [0, 1, 2, 3])
    styles = {"hirescam": Style("cividis", 0.6)}
    rows, extent = cache.panels(mri, "k", rgb, explanations, styles, mode=ORIGINAL,
                                outline=False, max_side=1024)
    figure = linked_figure(rows, extent)
    go.Figure(figure)  # a valid plotly figure
    layout = figure["layout"]
    assert [len(row) for row in rows] == [4, 4, 4, 4] and rows[1][0] is None
    for letter in "xy":  # zoom or pan one panel, all follow: every axis matches one
        axes = [k for k in layout if k.startswith(f"{letter}axis")]
        leaders = [k for k in axes if layout[k].get("matches") is None]
        assert len(axes) == 16 and len(leaders) == 1
        leader = leaders[0].replace("axis", "")
        assert all(layout[k]["matches"] == leader for k in axes if k != leaders[0])
    titles = [a["text"] for a in layout["annotations"]]
    for explanation in explanations:
        p = explanation.probabilities[explanation.target_index]
        assert f"{explanation.target_label} {p:.1%} - HiResCAM" in titles
    bars = [t["marker"]["colorscale"] for t in figure["data"] if t["type"] == "scatter"]
    assert len(bars) == 3 and [list(c) for c in bars[1]] == [list(c) for c in
                                                              colorscale("cividis")]
    canvas = cache.canvas(mri, "k", rgb, ORIGINAL, 1024)
    picture = sheet(canvas, explanations, styles, outline=False, tile_size=128)
    assert picture.shape[1] > 4 * 128 and picture.shape[0] > 4 * 128


def test_colour_scale_is_the_overlay_colour_map() -> None:
    scale = colorscale("viridis", steps=3)
    assert [v for v, _ in scale] == [0.0, 0.5, 1.0]
    assert scale[0][1] == "rgb(68,1,84)"  # viridis starts dark purple


def test_target_indices() -> None:
    classes = ["a", "b", "c"]
    assert target_indices(None, 2, classes) == [2]
    assert target_indices(EVERY_CLASS, 2, classes) == [0, 1, 2]
    assert target_indices("b", 2, classes) == [1]
    with pytest.raises(ValueError, match="unknown class"):
        target_indices("z", 0, classes)
