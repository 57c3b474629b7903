"""Predict: upload an image, get the label, its confidence, all probabilities and heat maps."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from models.predict import predict
from pages import image_and_model, page_header, target_choice
from xai import available_methods, explain_loaded, method_label
from xai.overlay import COLORMAPS, grid, overlay
from xai.report import build_report_content, png_bytes, report_html, report_pdf

DEFAULT_METHODS = ["gradcam", "hirescam", "haycam_plus"]

page_header("Predict")

image, digest, loaded, routing = image_and_model("predict", "Upload an image to start.")

with st.sidebar:
    st.header("Heat maps")
    choices = [m for m in available_methods(include_expensive=False) if m != "scorecam_fast"]
    methods = st.multiselect("Methods", choices, default=DEFAULT_METHODS, format_func=method_label)
    stages = st.checkbox("Add per-stage maps (stage 3, stage 4, fused)")
    target = target_choice(loaded)
    st.header("Display")
    cmap = st.selectbox("Colour map", list(COLORMAPS))
    alpha = st.slider("Opacity", 0.0, 1.0, 0.45, 0.05)
    contour = st.checkbox("Outline the thresholded region (Otsu)")

requested = [*methods, *(["stages"] if stages else [])]
key = (digest, loaded.card.name, tuple(requested), target)
left, right = st.columns([1, 2])
left.image(image.rgb, caption=f"Uploaded ({image.meta.get('width')} x {image.meta.get('height')})")
if st.button("Predict", type="primary", disabled=not requested):
    with st.spinner("Predicting and computing heat maps..."):
        st.session_state["predict"] = (key, predict(loaded, image.rgb), explain_loaded(
            loaded, image.rgb, methods=requested, target=target))
if not requested:
    st.warning("Choose at least one heat-map method.")

stored = st.session_state.get("predict")
if stored is None or stored[0] != key:
    right.info("Press **Predict** to run the model on this image.")
    st.stop()
prediction, explanation = stored[1], stored[2]
warnings = routing.warnings + prediction.warnings

with right:
    for warning in prediction.warnings:  # routing warnings are shown above, by the upload
        st.warning(warning, icon=":material/report:")
    st.metric("Prediction" + (" (not reliable)" if warnings else ""), prediction.label,
              f"{prediction.confidence:.1%} confidence", delta_color="off", delta_arrow="off",
              border=True)
    ranked = sorted(prediction.probabilities.items(), key=lambda kv: kv[1])
    figure = go.Figure(go.Bar(
        x=[p for _, p in ranked], y=[c for c, _ in ranked], orientation="h",
        text=[f"{p:.1%}" for _, p in ranked]))
    figure.update_layout(height=80 + 40 * len(ranked), margin=dict(l=0, r=0, t=10, b=0),
                         xaxis=dict(range=[0, 1], title="probability"))
    st.plotly_chart(figure, width="stretch")
left.image(explanation.image, caption=f"What the model sees ({loaded.card.preprocessing}, "
                                      f"{loaded.card.input_size} px)")

st.subheader(f"Heat maps for class '{explanation.target_label}'")
outline = "otsu" if contour else None
overlays = {name: overlay(explanation.image, cam, cmap=cmap, alpha=alpha, contour=outline)
            for name, cam in explanation.maps.items()}
columns = st.columns(min(4, len(overlays)))
for i, (name, picture) in enumerate(overlays.items()):
    cam = explanation.maps[name]
    columns[i % len(columns)].image(
        picture, caption=f"{cam.label} - {cam.ms:.0f} ms" + (" (flat map)" if cam.flat else ""))
st.caption(f"Shared forward + gradient pass: {explanation.pass_ms:.0f} ms. Maps are kept: "
           "changing colour map or opacity does not recompute them.")

content = build_report_content(explanation, loaded.card, overlays, image.meta, warnings=warnings,
                               modality_source=routing.source)
c1, c2, c3 = st.columns(3)
c1.download_button("Overlays (PNG)", png_bytes(grid(explanation.image, explanation.maps, cmap=cmap,
                                                     alpha=alpha, contour=outline)),
                   file_name="medxai-overlays.png", mime="image/png")
c2.download_button("Report (HTML)", report_html(content), file_name="medxai-report.html",
                   mime="text/html")
c3.download_button("Report (PDF)", report_pdf(content), file_name="medxai-report.pdf",
                   mime="application/pdf")
