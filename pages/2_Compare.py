"""Compare methods: every heat-map method on one image, timed, scored against a ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from imaging import ImageInputError, load_image
from pages import image_and_model, page_header, target_choice
from xai.compare import explain_all, faithfulness, score_against_mask
from xai.overlay import grid

page_header("Compare methods")

image, digest, loaded, _ = image_and_model("compare", "Upload an image to compare every heat-map method on it.")

c1, c2 = st.columns(2)
target = target_choice(loaded, c1)
exact = c2.checkbox("Exact Score-CAM (every channel; slow on a CPU)")
mask_file = st.file_uploader("Optional ground-truth mask (white = region)",
                             type=["png", "jpg", "jpeg", "tif", "tiff", "bmp"], key="compare-mask")

key = (digest, loaded.card.name, target, exact)
if st.button("Run all methods", type="primary"):
    progress = st.progress(0.0, text="Starting...")
    result = explain_all(
        loaded, image.rgb, target=target, exact_scorecam=exact,
        on_step=lambda i, n, group: progress.progress(i / n, text=f"Computing {', '.join(group)}..."))
    progress.progress(1.0, text="Done")
    st.session_state["compare"] = (key, result)

stored = st.session_state.get("compare")
if stored is None or stored[0] != key:
    st.info("Press **Run all methods**.")
    st.stop()
explanation = stored[1]
st.markdown(f"**{explanation.label}** ({explanation.confidence:.1%}); maps explain "
            f"**{explanation.target_label}**.")
st.image(grid(explanation.image, explanation.maps, cols=4), caption="Every method with its time")
st.dataframe([{"method": m.label, "ms": round(m.ms, 1), "flat map": m.flat}
              for m in explanation.maps.values()], hide_index=True)

if mask_file is not None:
    try:
        mask_rgb = load_image(mask_file.getvalue(), name=mask_file.name).rgb
    except ImageInputError as exc:
        st.error(f"Cannot use the mask {mask_file.name}: {exc}")
    else:
        if loaded.card.preprocessing != "resize":
            st.warning(f"This model crops the image ({loaded.card.preprocessing}); the mask is "
                       "only resized, so scores may be off.")
        scores = pd.DataFrame(score_against_mask(explanation.maps, mask_rgb,
                                                 loaded.card.input_size))
        st.subheader("Localisation against the mask (best in green)")
        st.dataframe(scores.style.highlight_max(subset=["iou", "dice", "pointing", "energy"],
                                                color="#c6efce").format(precision=3),
                     hide_index=True)

st.subheader("Faithfulness: deletion and insertion")
if st.checkbox("Compute deletion / insertion curves (about a second per method)"):
    with st.spinner("Perturbing the image..."):
        curves = faithfulness(loaded, image.rgb, explanation.maps, explanation.target_index)
    columns = st.columns(2)
    for column, title, attr in ((columns[0], "Deletion (lower AUC is better)", "deletion_curve"),
                                (columns[1], "Insertion (higher AUC is better)", "insertion_curve")):
        figure = go.Figure([go.Scatter(x=np.linspace(0, 1, len(getattr(c, attr))),
                                       y=getattr(c, attr), name=c.label) for c in curves])
        figure.update_layout(title=title, xaxis_title="fraction of pixels",
                             yaxis_title="target probability", height=350)
        column.plotly_chart(figure, width="stretch")
    st.dataframe([{"method": c.label, "deletion AUC": round(c.deletion_auc, 3),
                   "insertion AUC": round(c.insertion_auc, 3)} for c in curves], hide_index=True)
