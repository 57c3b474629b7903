"""The reading-room viewer: maps on the uploaded image, panels with linked zoom, every class.

No Streamlit here (``pages/1_Predict.py`` only lays out widgets):

* :class:`MapCache` (one per session) keeps the model's view of an image with its geometry
  (per image and model), every map (per image, model, method and target class) and the
  rendered panels (per map and display setting). A request computes only what is missing, and
  all missing classes in ONE batched pass (:func:`xai.engine.explain_view`).
* :func:`render` draws a map on the uploaded image through the preprocessing geometry (the
  resize, the MRI crop box) at any uniformly scaled size, or on the model's view.
* :func:`linked_figure` lays the panels out as plotly subplots with shared axes (a figure
  dict): zooming or panning one panel moves all of them. Axes count the uploaded image's
  pixels; only the pictures inside are capped in size for the browser, never the coordinates.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np
from plotly.subplots import make_subplots

from imaging import ViewGeometry, display_shape, preprocess_with_geometry
from imaging.geometry import Box
from xai.engine import CamMap, Explanation, explain_view, resolve_methods
from xai.overlay import colorscale, overlay, threshold_contour, tile

if TYPE_CHECKING:
    from models.predict import Prediction
    from models.registry import LoadedModel

__all__ = [
    "DISPLAY_SIDES",
    "EVERY_CLASS",
    "MODEL_VIEW",
    "ORIGINAL",
    "VIEWS",
    "Canvas",
    "Extent",
    "MapCache",
    "Panel",
    "Style",
    "data_uri",
    "linked_figure",
    "make_canvas",
    "render",
    "sheet",
    "target_indices",
]

ORIGINAL = "original image"
MODEL_VIEW = "what the model sees"
VIEWS = (ORIGINAL, MODEL_VIEW)
DISPLAY_SIDES: dict[str, int | None] = {"1024 px (fast)": 1024, "2048 px": 2048,
                                        "full resolution": None}
"""Largest side of each picture sent to the browser; the axes keep the uploaded size."""
EVERY_CLASS = "every class (one row each)"


def target_indices(choice: str | None, predicted: int, classes: Sequence[str]) -> list[int]:
    """The class indices to explain: ``None`` the predicted class, :data:`EVERY_CLASS` all of
    them in card order, else the named class."""
    if choice is None:
        return [predicted]
    if choice == EVERY_CLASS:
        return list(range(len(classes)))
    if choice not in classes:
        raise ValueError(f"unknown class {choice!r}; classes: {', '.join(classes)}")
    return [list(classes).index(choice)]


@dataclass(frozen=True)
class Style:
    """How one view draws its maps."""

    cmap: str = "turbo"
    alpha: float = 0.45


@dataclass(frozen=True, eq=False)
class Canvas:
    """The picture maps are drawn on, at display size, and where the model's view lies on it
    (``geometry`` in the coordinates of the full-size image the picture was scaled from)."""

    picture: np.ndarray
    geometry: ViewGeometry
    title: str


@dataclass(frozen=True)
class Panel:
    """One picture of the viewer, encoded for the browser (:func:`data_uri`) with its
    (height, width) in pixels; ``cmap`` names the colour bar of a heat map (None: plain);
    ``box``: where the model's view lies, in the figure's coordinates (None: all of it)."""

    title: str
    uri: str
    shape: tuple[int, int]
    cmap: str | None = None
    box: Box | None = None


Extent = tuple[int, int]
"""(height, width) of a figure's coordinates: the uploaded image's pixels."""


def make_canvas(rgb: np.ndarray, view: np.ndarray, geometry: ViewGeometry, mode: str,
                max_side: int | None) -> Canvas:
    """The uploaded image (``ORIGINAL``) or the model's view (``MODEL_VIEW``), scaled down to
    ``max_side`` at most."""
    if mode == ORIGINAL:
        base, where = rgb, geometry
        title = f"Uploaded, {geometry.width} x {geometry.height} px"
    elif mode == MODEL_VIEW:
        base = view
        where = ViewGeometry(geometry.size, geometry.size, (0, 0, geometry.size, geometry.size),
                             geometry.size)
        title = f"What the model sees, {geometry.size} x {geometry.size} px"
    else:
        raise ValueError(f"unknown view {mode!r}; choose one of {', '.join(VIEWS)}")
    height, width = display_shape(*base.shape[:2], max_side)
    if (height, width) != base.shape[:2]:
        base = cv2.resize(base, (width, height), interpolation=cv2.INTER_AREA)
    return Canvas(np.ascontiguousarray(base), where, title)


def render(canvas: Canvas, cam: CamMap, style: Style, outline: bool) -> np.ndarray:
    """``cam`` over the canvas picture, through the view's geometry; the part of the image the
    model never saw, and a flat map, stay unblended. ``outline``: the map's region (DT
    Grad-CAM's own mask, else Otsu on the map), found on the model's grid and carried over."""
    shape = canvas.picture.shape[:2]
    heat, covered = canvas.geometry.to_image(cam.map, shape)
    if cam.flat:
        covered[:] = False
    region = None
    if outline and not cam.flat:
        on_view = cam.mask if cam.mask is not None else threshold_contour(cam.map, "otsu")
        region = canvas.geometry.to_image(on_view.astype(np.float32), shape)[0] > 0.5
    width = max(1, round(max(shape) / 400))
    return overlay(canvas.picture, heat, cmap=style.cmap, alpha=style.alpha, contour=region,
                   contour_width=width, covered=covered)


def sheet(canvas: Canvas, explanations: Sequence[Explanation], styles: Mapping[str, Style],
          outline: bool, *, tile_size: int = 512) -> np.ndarray:
    """The viewer's panels as one labelled picture (a download): per explanation (class) a
    row of the plain picture and every map."""
    several = len(explanations) > 1
    pictures = []
    for explanation in explanations:
        p = float(explanation.probabilities[explanation.target_index])
        pictures.append((canvas.picture, [canvas.title.split(",")[0],
                                          f"{explanation.target_label} {p:.1%}"]))
        for name, cam in explanation.maps.items():
            pictures.append((render(canvas, cam, styles.get(name, Style()), outline),
                             _title(explanation, cam, several).split(" - ", 1)))
    return tile(pictures, cols=1 + max(len(e.maps) for e in explanations), tile_size=tile_size)


def data_uri(picture: np.ndarray) -> str:
    """A uint8 RGB picture as a JPEG data URI for the screen: quality 95 without chroma
    subsampling, 15-20x faster to encode and 5-10x smaller than PNG at 1024 px (downloads and
    reports stay PNG)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95,
                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise ValueError("could not encode the picture")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


class _Lru(OrderedDict):
    """A dict that forgets its least recently used entries beyond ``size`` (no dependency for
    a dozen lines: functools.lru_cache cannot key on a digest while taking the arrays). Safe
    for a download built on another thread while the page reruns."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], object]) -> object:
        with self._lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()  # outside the lock: at worst two threads make the same value
        with self._lock:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


class MapCache:
    """One session's views, maps and rendered panels, so that a display change redraws only
    what changed and a new method or class computes only its own maps."""

    def __init__(self, max_maps: int = 256, max_panels: int = 48) -> None:
        self._views = _Lru(8)
        self._heads = _Lru(32)
        self._maps = _Lru(max_maps)
        self._canvases = _Lru(4)
        self._thumbnails = _Lru(8)
        self._panels = _Lru(max_panels)
        self.passes = 0
        """Explanation passes run so far (each covers every missing class and method)."""

    @staticmethod
    def _model_key(loaded: LoadedModel) -> tuple[str, str]:
        return loaded.card.name, loaded.card.sha256

    def view(self, loaded: LoadedModel, image_key: str,
             rgb: np.ndarray) -> tuple[np.ndarray, ViewGeometry]:
        """The model's view of the image and where it lies in the image."""
        card = loaded.card
        return self._views.get_or_make(  # type: ignore[return-value]
            (image_key, self._model_key(loaded)),
            lambda: preprocess_with_geometry(rgb, card.preprocessing, card.input_size))

    def thumbnail(self, image_key: str, rgb: np.ndarray, side: int = 480) -> np.ndarray:
        """The image scaled down to ``side`` px at most, for a preview that is quick to send."""

        def shrink() -> np.ndarray:
            height, width = display_shape(*rgb.shape[:2], side)
            if (height, width) == rgb.shape[:2]:
                return rgb
            return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)

        return self._thumbnails.get_or_make((image_key, side), shrink)  # type: ignore[return-value]

    def explain(self, loaded: LoadedModel, image_key: str, rgb: np.ndarray,
                methods: str | Sequence[str], targets: Sequence[int],
                decision: Prediction | None = None) -> list[Explanation]:
        """One :class:`Explanation` per target class index (in order) with every method's
        map; what is not cached yet is computed in one batched pass. ``decision``: the
        prediction already made for this image, reused (see :func:`xai.engine.explain_view`)."""
        names = resolve_methods(methods, loaded.arch.stage_layers)
        view, _ = self.view(loaded, image_key, rgb)
        model = self._model_key(loaded)
        head_key = (image_key, model)

        def missing(target: int) -> list[str]:
            return [n for n in names if (image_key, model, n, target) not in self._maps]

        todo = [t for t in dict.fromkeys(targets) if missing(t) or head_key not in self._heads]
        if todo:
            wanted = list(dict.fromkeys(n for t in todo for n in (missing(t) or names)))
            results = explain_view(loaded, view, methods=wanted, targets=todo,
                                   decision=decision)
            self.passes += 1
            for target, result in zip(todo, results, strict=True):
                for name, cam in result.maps.items():
                    self._maps.get_or_make((image_key, model, name, target), lambda c=cam: c)
            self._heads.get_or_make(head_key, lambda: replace(results[0], maps={}, image=None))
        head = self._heads[head_key]
        return [replace(head, target_index=t, image=view,
                        maps={n: self._maps.get_or_make((image_key, model, n, t), _gone)
                              for n in names})
                for t in targets]

    def canvas(self, loaded: LoadedModel, image_key: str, rgb: np.ndarray, mode: str,
               max_side: int | None) -> Canvas:
        """What this image's maps are drawn on in ``mode`` (see :func:`make_canvas`)."""
        view, geometry = self.view(loaded, image_key, rgb)
        return self._canvases.get_or_make(  # type: ignore[return-value]
            (image_key, self._model_key(loaded), mode, max_side),
            lambda: make_canvas(rgb, view, geometry, mode, max_side))

    def _panel(self, loaded: LoadedModel, image_key: str, canvas: Canvas, extent: Extent,
               title: str, drawn: tuple[CamMap, int, Style, bool] | None, *, mode: str,
               max_side: int | None) -> Panel:
        """The plain canvas (``drawn`` None) or one map over it, as a cached panel placed in
        ``extent``; ``drawn`` = (map, target class, style, outline)."""
        key: tuple = (image_key, self._model_key(loaded), mode, max_side)
        if drawn is None:
            uri = self._panels.get_or_make(key, lambda: data_uri(canvas.picture))
        else:
            cam, target, style, outline = drawn
            uri = self._panels.get_or_make(
                (*key, cam.name, target, style, outline),
                lambda: data_uri(render(canvas, cam, style, outline)))
        box = canvas.geometry.box_on(extent) if canvas.geometry.cropped else None
        return Panel(title, uri, canvas.picture.shape[:2], None if drawn is None
                     else drawn[2].cmap, box)  # type: ignore[arg-type]

    def panels(self, loaded: LoadedModel, image_key: str, rgb: np.ndarray,
               explanations: Sequence[Explanation], styles: Mapping[str, Style], *,
               mode: str, outline: bool, max_side: int | None) -> tuple[list[list[Panel | None]],
                                                                         Extent]:
        """Rows of panels, one row per explanation (class): the plain picture first (first row
        only), then one overlay per method in its ``styles`` entry; and the figure's extent."""
        canvas = self.canvas(loaded, image_key, rgb, mode, max_side)
        extent = (canvas.geometry.height, canvas.geometry.width)
        options = dict(mode=mode, max_side=max_side)
        several = len(explanations) > 1
        rows: list[list[Panel | None]] = []
        for i, explanation in enumerate(explanations):
            row: list[Panel | None] = [
                self._panel(loaded, image_key, canvas, extent, canvas.title, None, **options)
                if i == 0 else None]
            for name, cam in explanation.maps.items():
                drawn = (cam, explanation.target_index, styles.get(name, Style()), outline)
                row.append(self._panel(loaded, image_key, canvas, extent,
                                       _title(explanation, cam, several), drawn, **options))
            rows.append(row)
        return rows, extent

    def side_by_side(self, loaded: LoadedModel, images: Sequence[tuple[str, str, np.ndarray]],
                     explanations: Sequence[Explanation], style: Style, *, mode: str,
                     outline: bool, max_side: int | None) -> tuple[list[list[Panel | None]],
                                                                   Extent]:
        """Several images (e.g. a prior and a current study) in one row, each followed by its
        map of one method: ``images`` are (label, image key, rgb), ``explanations`` theirs.
        Coordinates are the first image's pixels; the others are scaled onto them."""
        row: list[Panel | None] = []
        extent: Extent | None = None
        for (label, image_key, rgb), explanation in zip(images, explanations, strict=True):
            canvas = self.canvas(loaded, image_key, rgb, mode, max_side)
            extent = extent or (canvas.geometry.height, canvas.geometry.width)
            options = dict(mode=mode, max_side=max_side)
            row.append(self._panel(loaded, image_key, canvas, extent,
                                   f"{label}: {canvas.title.lower()}", None, **options))
            for cam in explanation.maps.values():
                p = float(explanation.probabilities[explanation.target_index])
                row.append(self._panel(
                    loaded, image_key, canvas, extent,
                    f"{label}: {cam.label}, {explanation.target_label} {p:.1%}",
                    (cam, explanation.target_index, style, outline), **options))
        if extent is None:
            raise ValueError("no image to show")
        return [row], extent


def _gone() -> CamMap:
    raise KeyError("a map left the cache while in use; raise MapCache(max_maps=...)")


def _title(explanation: Explanation, cam: CamMap, several: bool) -> str:
    flat = " (flat map)" if cam.flat else ""
    if several:
        p = float(explanation.probabilities[explanation.target_index])
        return f"{explanation.target_label} {p:.1%} - {cam.label}{flat}"
    return f"{cam.label} - {cam.ms:.0f} ms{flat}"


_TITLE_PX = 30  # room for a panel's title above it
_AXES = dict(showticklabels=False, showgrid=False, zeroline=False, ticks="", constrain="domain")


@functools.lru_cache(maxsize=32)
def _grid_layout(n_rows: int, n_cols: int, vertical_spacing: float) -> str:
    """Axes, domains and the matching of every axis to one (plotly's shared axes "all"), as
    JSON: plotly's figure objects validate each property, a third of a second per rerun, so
    the layout is built by ``make_subplots`` once per grid and the rest as plain dicts."""
    return make_subplots(rows=n_rows, cols=n_cols, shared_xaxes="all", shared_yaxes="all",
                         horizontal_spacing=0.012,
                         vertical_spacing=vertical_spacing).layout.to_json()


def linked_figure(rows: Sequence[Sequence[Panel | None]], extent: Extent, *,
                  width_px: int = 950) -> dict:
    """Panels as subplots with shared axes (zoom or pan one, all follow), each picture placed
    over the ``extent`` in the full-size image's pixel coordinates, a dashed box where the
    model's view lies (when it is a crop), and a colour bar under each column of heat maps
    (of the first row); a plotly figure dict. ``width_px``: the width the figure is expected
    to get, to size the rows to the pictures' aspect ratio."""
    height, width = extent
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    row_height = min(700, max(160, width_px / n_cols * height / width))
    plot_height = n_rows * row_height + (n_rows - 1) * _TITLE_PX
    layout = json.loads(_grid_layout(n_rows, n_cols, round(_TITLE_PX / plot_height, 4)))
    data: list[dict] = []
    annotations: list[dict] = []
    shapes: list[dict] = []
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            if panel is None:
                continue
            suffix = str(r * n_cols + c + 1) if r or c else ""
            x_domain, y_domain = (layout[f"{a}axis{suffix}"]["domain"] for a in "xy")
            dy, dx = height / panel.shape[0], width / panel.shape[1]
            data.append(dict(type="image", source=panel.uri, x0=dx / 2 - 0.5, y0=dy / 2 - 0.5,
                             dx=dx, dy=dy, xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                             name=panel.title,
                             hovertemplate="x %{x:.0f}, y %{y:.0f}<extra></extra>"))
            annotations.append(dict(text=panel.title, x=sum(x_domain) / 2, y=y_domain[1],
                                    xref="paper", yref="paper", xanchor="center",
                                    yanchor="bottom", showarrow=False, font=dict(size=12)))
            if panel.box is not None:
                left, top, right, bottom = panel.box
                shapes.append(dict(type="rect", xref=f"x{suffix}", yref=f"y{suffix}",
                                   x0=left - 0.5, y0=top - 0.5, x1=right - 0.5, y1=bottom - 0.5,
                                   line=dict(color="white", width=1, dash="dash")))
            if r == 0 and panel.cmap is not None:
                data.append(_colour_bar(panel.cmap, suffix, x_domain))
    for key in layout:
        if key.startswith("xaxis"):
            layout[key].update(range=[-0.5, width - 0.5], **_AXES)
        elif key.startswith("yaxis"):
            layout[key].update(range=[height - 0.5, -0.5], scaleanchor="x",
                               constraintoward="top", **_AXES)
    layout.update(
        annotations=annotations, shapes=shapes, height=round(plot_height) + _TITLE_PX + 64,
        margin=dict(l=4, r=4, t=_TITLE_PX, b=64), dragmode="zoom", showlegend=False,
        uirevision=f"{width}x{height}", plot_bgcolor="rgba(0,0,0,0)")
    return {"data": data, "layout": layout}


def _colour_bar(cmap: str, suffix: str, x_domain: Sequence[float]) -> dict:
    """A horizontal colour bar under a column: an invisible trace carrying the scale."""
    left, right = x_domain
    return dict(
        type="scatter", x=[None], y=[None], xaxis=f"x{suffix}", yaxis=f"y{suffix}",
        mode="markers", hoverinfo="skip",
        marker=dict(colorscale=colorscale(cmap), cmin=0.0, cmax=1.0, color=[0.0],
                    showscale=True, colorbar=dict(
                        orientation="h", x=(left + right) / 2, xanchor="center",
                        len=(right - left) * 0.9, y=-0.01, yanchor="top", thickness=10,
                        tickvals=[0, 0.5, 1], ticktext=["low", "map value", "high"],
                        tickfont=dict(size=10))))
