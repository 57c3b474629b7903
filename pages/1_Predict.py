"""Predict: upload an image, get the label, its confidence, all probabilities and a map viewer."""

from __future__ import annotations

import streamlit as st

from models.card_text import best_localizer
from models.predict import predict
from pages import (
    EVERY_CLASS,
    image_and_model,
    keep_settings,
    model_figures,
    page_header,
    session_map_cache,
    target_choice,
)
from xai import method_label, resolve_methods
from xai.engine import stage_methods
from xai.legend import grid_text
from xai.overlay import COLORBLIND_SAFE, COLORMAPS, overlay
from xai.registry import method_names
from xai.report import CASE_NOTE_LIMIT, build_report_content, png_bytes, report_html, report_pdf
from xai.viewer import DISPLAY_SIDES, ORIGINAL, VIEWS, Style, linked_figure, sheet, target_indices

DEFAULT_METHODS = ["gradcam", "hirescam", "haycam_plus"]
SETTINGS = {"predict-methods": DEFAULT_METHODS, "predict-stages": False,
            "predict-view": ORIGINAL, "predict-side": next(iter(DISPLAY_SIDES)),
            "predict-outline": False, "predict-cmap": Style().cmap, "predict-alpha": Style().alpha}


def colormap_name(name: str) -> str:
    return f"{name} (colour-blind safe)" if name in COLORBLIND_SAFE else name


def apply_to_every_view(names: list[str]) -> None:
    """Copy the sidebar's colour map and opacity into each view's own controls."""
    for name in names:
        st.session_state[f"predict-cmap-{name}"] = st.session_state["predict-cmap"]
        st.session_state[f"predict-alpha-{name}"] = st.session_state["predict-alpha"]


page_header("Predict")
keep_settings(SETTINGS, prefixes=("predict-cmap-", "predict-alpha-"))

image, digest, loaded, routing = image_and_model("predict", "Upload an image to start.")
cache = session_map_cache()

choices = method_names(include_expensive=False, include_variants=False)
best = best_localizer(loaded.card)
if best in choices and st.session_state.get("predict-best-for") != loaded.card.name:
    # A model whose card names its best localiser starts with that method selected, once.
    st.session_state["predict-best-for"] = loaded.card.name
    st.session_state["predict-methods"] = [
        best, *(m for m in st.session_state["predict-methods"] if m != best)]
stage_names = stage_methods(loaded.arch.stage_layers)
with st.sidebar:
    st.header("Heat maps")
    methods = st.multiselect("Methods", choices, key="predict-methods", format_func=method_label,
                             help=f"{method_label(best)} found the lesions best on this model's "
                                  "test masks." if best in choices else None)
    stages = stage_names and st.checkbox(
        f"Add per-stage maps ({', '.join(method_label(n) for n in stage_names)})",
        key="predict-stages")
    target = target_choice(loaded, every_class=True)
    requested = [*methods, *(stage_names if stages else [])]

left, right = st.columns([1, 2])
left.image(cache.thumbnail(digest, image.rgb),
           caption=f"Uploaded ({image.meta.get('width')} x {image.meta.get('height')} px)")
model_key = (digest, loaded.card.name, loaded.card.sha256)
if st.button("Predict", type="primary", disabled=not requested):
    with st.spinner("Predicting..."):
        view, _ = cache.view(loaded, digest, image.rgb)  # preprocessed once for both
        st.session_state["predict"] = (model_key, predict(loaded, image.rgb, view=view))
if not requested:
    st.warning("Choose at least one heat-map method.")
    st.stop()
stored = st.session_state.get("predict")
if stored is None or stored[0] != model_key:
    right.info("Press **Predict** to run the model on this image.")
    st.stop()
prediction = stored[1]
warnings = routing.warnings + prediction.warnings
if st.session_state.get("predict-note-for") != digest:  # a case note belongs to one image
    st.session_state.pop("predict-case-note", None)
    st.session_state["predict-note-for"] = digest

with right:
    for warning in prediction.warnings:  # routing warnings are shown above, by the upload
        st.warning(warning, icon=":material/report:")
    st.metric("Prediction" + (" (not reliable)" if warnings else ""), prediction.label,
              f"{prediction.confidence:.1%} confidence", delta_color="off", delta_arrow="off",
              border=True)
    for name, p in sorted(prediction.probabilities.items(), key=lambda kv: -kv[1]):
        st.progress(p, text=f"{name}: {p:.1%}")  # light to draw: no chart library
    model_figures(loaded.card)

targets = target_indices(target, prediction.index, loaded.card.classes)
with st.spinner("Computing heat maps..."):
    explanations = cache.explain(loaded, digest, image.rgb, requested, targets, prediction)
heading = ("every class, one row each" if target == EVERY_CLASS
           else f"class '{explanations[0].target_label}'")
st.subheader(f"Heat maps for {heading}")



@st.fragment
def viewer(explanations: list, names: list[str]) -> None:
    """The map viewer and its display controls: a display change reruns only this part."""
    top = st.columns([3, 2, 2, 2])
    mode = top[0].radio("Show the maps on", VIEWS, key="predict-view", horizontal=True,
                        help="The uploaded image at its own resolution (maps carried back "
                             "through the resize and any crop), or the square picture the "
                             "model was given.")
    side = top[1].selectbox("Picture size sent to the browser", list(DISPLAY_SIDES),
                            key="predict-side",
                            help="Only the pictures are scaled down; zoom and coordinates "
                                 "stay in the uploaded image's pixels.")
    top[2].selectbox("Colour map, every view", list(COLORMAPS), key="predict-cmap",
                     format_func=colormap_name, on_change=apply_to_every_view, args=(names,))
    top[3].slider("Opacity, every view", 0.0, 1.0, step=0.05, key="predict-alpha",
                  on_change=apply_to_every_view, args=(names,))
    controls = st.columns(1 + len(names))
    outline = controls[0].checkbox("Outline the map's region (Otsu)", key="predict-outline")
    controls[0].caption("Drag in any panel to zoom, scroll to zoom, double-click to reset: "
                        "every panel follows.")
    styles = {}
    for column, name in zip(controls[1:], names, strict=True):
        for setting in ("cmap", "alpha"):  # a new view starts from the "every view" choice
            st.session_state.setdefault(f"predict-{setting}-{name}",
                                        st.session_state[f"predict-{setting}"])
        cmap = column.selectbox(f"{method_label(name)}: colour map", list(COLORMAPS),
                                key=f"predict-cmap-{name}", format_func=colormap_name)
        alpha = column.slider(f"{method_label(name)}: opacity", 0.0, 1.0, step=0.05,
                              key=f"predict-alpha-{name}")
        column.caption(grid_text(explanations[0].maps[name]))  # the map's native grid
        styles[name] = Style(cmap, alpha)
    max_side = DISPLAY_SIDES[side]
    rows, extent = cache.panels(loaded, digest, image.rgb, explanations, styles, mode=mode,
                                outline=outline, max_side=max_side)
    st.plotly_chart(linked_figure(rows, extent), key="predict-viewer", width="stretch",
                    config={"scrollZoom": True, "displaylogo": False})
    st.caption(f"Maps are computed on the model's {loaded.card.input_size} x "
               f"{loaded.card.input_size} px view ({loaded.card.preprocessing}) and carried "
               "back onto the image; they are kept per image, model, method and class, so "
               "display changes recompute nothing. Shared pass: "
               f"{explanations[0].pass_ms:.0f} ms per class.")

    # Downloads are built when clicked, never on a rerun.
    report_for = next((e for e in explanations if e.target_index == prediction.index),
                      explanations[0])

    note = st.text_area("Case note for the report (optional)", key="predict-case-note",
                        max_chars=CASE_NOTE_LIMIT,
                        help="Printed on the downloaded report only: never saved or logged. "
                             "Runs of six or more digits (record numbers) are removed.")
    cmap = st.session_state["predict-cmap"]

    def report_content():
        # One colour bar on the report, so every map there takes the "every view" colour map.
        contour = "otsu" if outline else None
        overlays = {name: overlay(report_for.image, cam, cmap=cmap, alpha=styles[name].alpha,
                                  contour=contour)
                    for name, cam in report_for.maps.items()}
        return build_report_content(report_for, loaded.card, overlays, image.meta,
                                    warnings=warnings, modality_source=routing.source,
                                    case_note=note, cmap=cmap)

    def panels_png() -> bytes:
        canvas = cache.canvas(loaded, digest, image.rgb, mode, max_side)
        return png_bytes(sheet(canvas, explanations, styles, outline))

    c1, c2, c3 = st.columns(3)
    c1.download_button("Overlays (PNG)", panels_png, file_name="medxai-overlays.png",
                       mime="image/png", on_click="ignore")
    c2.download_button("Report (HTML)", lambda: report_html(report_content()),
                       file_name="medxai-report.html", mime="text/html", on_click="ignore")
    c3.download_button("Report (PDF)", lambda: report_pdf(report_content()),
                       file_name="medxai-report.pdf", mime="application/pdf", on_click="ignore")


viewer(explanations, resolve_methods(requested, loaded.arch.stage_layers))
