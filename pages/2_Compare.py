"""Compare methods: every heat-map method on one image, timed, ranked against a ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from imaging import WHOLE_IMAGE, ImageInputError, load_image
from models.card_text import best_localizer
from pages import image_and_model, page_header, target_choice
from xai.compare import (
    Ranking,
    explain_all,
    faithfulness,
    faithfulness_ranking,
    score_against_mask,
    step_text,
)
from xai.legend import COLORBAR_CAPTION, grid_text, map_notes, with_colorbar
from xai.overlay import overlay

BEST, REFERENCE = "background-color: #c6efce", "color: #777; font-style: italic"


def ranking_table(ranking: Ranking) -> None:
    """The ranking as a fully visible table: best cells green, reference rows grey."""
    frame = pd.DataFrame(ranking.rows, columns=["rank", "method", *ranking.columns])

    def style(_: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=frame.index, columns=frame.columns)
        for column, rows in ranking.best.items():
            css.loc[rows, column] = BEST
        css.loc[ranking.references, :] = REFERENCE
        return css

    st.dataframe(frame.style.apply(style, axis=None).format(precision=3, na_rep="n/a"),
                 hide_index=True, height="content")
    for note in ranking.notes:
        st.caption(note)


page_header("Compare methods")

image, digest, loaded, _ = image_and_model("compare", "Upload an image to compare every heat-map method on it.")

c1, c2 = st.columns(2)
target = target_choice(loaded, c1)
exact = c2.checkbox("Exact Score-CAM (every channel; slow on a CPU)")
mask_file = st.file_uploader("Optional ground-truth mask (white = region on black, e.g. a "
                             "Kvasir-SEG polyp mask as it is)",
                             type=["png", "jpg", "jpeg", "tif", "tiff", "bmp"], key="compare-mask")

key = (digest, loaded.card.name, target, exact)
if st.button("Run all methods", type="primary"):
    progress = st.progress(0.0, text="Starting...")
    result = explain_all(
        loaded, image.rgb, target=target, exact_scorecam=exact,
        on_step=lambda i, n, group: progress.progress(i / n, text=step_text(group)))
    progress.progress(1.0, text="Done")
    st.session_state["compare"] = (key, result)

stored = st.session_state.get("compare")
if stored is None or stored[0] != key:
    st.info("Press **Run all methods**.")
    st.stop()
explanation = stored[1]
st.markdown(f"**{explanation.label}** ({explanation.confidence:.1%}); maps explain "
            f"**{explanation.target_label}**.")
best = best_localizer(loaded.card)  # first and marked when this run has its map
best = best if best in explanation.maps else None
st.caption(COLORBAR_CAPTION + (f" First: {explanation.maps[best].label}, the method that found "
                               "the lesions best on this model's test masks." if best else ""))
columns = st.columns(4)
ordered = sorted(explanation.maps.items(), key=lambda item: item[0] != best)  # stable sort
for i, (name, cam) in enumerate(ordered):
    with columns[i % 4]:
        st.image(with_colorbar(overlay(explanation.image, cam)),
                 caption=f"{cam.label}{' (best on the test masks)' if name == best else ''} - "
                         f"{grid_text(cam)} - {cam.ms:.0f} ms")
        for note in map_notes(cam, explanation.target_label):
            st.caption(f":material/warning: {note}")

if mask_file is not None:
    try:
        mask_rgb = load_image(mask_file.getvalue(), name=mask_file.name).rgb
    except ImageInputError as exc:
        st.error(f"Cannot use the mask {mask_file.name}: {exc}")
    else:
        if loaded.card.preprocessing not in WHOLE_IMAGE:
            st.warning(f"This model crops the image ({loaded.card.preprocessing}); the mask is "
                       "only resized, so scores may be off.")
        st.subheader("Localisation against the mask")
        st.caption("Ranked by IoU, then Dice, then energy; `2=` is a shared rank; green: the best "
                   "value of a column (none when every method has it). Grey reference rows: the "
                   "whole frame (a method below it has localised nothing) and the best map the "
                   "CAM grid can draw.")
        ranking_table(score_against_mask(explanation.maps, mask_rgb, region="mask",
                                         target_layer=loaded.arch.target_layer))

st.subheader("Faithfulness: deletion and insertion")
st.caption("Pixels are removed from the image (deletion) or put into a mean-colour image "
           "(insertion), most relevant first. The score is the explained class's log-odds, "
           "scaled so the mean-colour image is 0 and the image itself 1: a faithful map makes "
           "deletion fall fast (low AUC) and insertion rise fast (high AUC).")
faith_key = (key, tuple(explanation.maps))
if st.button("Compute deletion / insertion curves (about a second per method)"):
    progress = st.progress(0.0, text="Perturbing the image...")
    curves = faithfulness(loaded, image.rgb, explanation.maps, explanation.target_index,
                          on_step=lambda i, n, label: progress.progress(
                              i / n, text=f"Deletion and insertion curves of {label}..."))
    progress.progress(1.0, text="Done")
    st.session_state["compare-faithfulness"] = (faith_key, curves)
stored_curves = st.session_state.get("compare-faithfulness")
if stored_curves is not None and stored_curves[0] == faith_key:
    curves = stored_curves[1]
    plots = st.columns(2)
    for column, title, attr in ((plots[0], "Deletion (lower AUC is better)", "deletion_curve"),
                                (plots[1], "Insertion (higher AUC is better)", "insertion_curve")):
        figure = go.Figure([go.Scatter(x=np.linspace(0, 1, len(getattr(c, attr))),
                                       y=getattr(c, attr), name=c.label)
                            for c in curves if len(getattr(c, attr))])
        figure.update_layout(title=title, xaxis_title="fraction of pixels, most relevant first",
                             yaxis_title="evidence (0 = mean colour, 1 = image)", height=420)
        column.plotly_chart(figure, width="stretch")
    ranking_table(faithfulness_ranking(curves))
