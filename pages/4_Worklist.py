"""Worklist: many images at once (files, .zip archives, a DICOM series) in one sortable table,
a row opened in the map viewer, two images side by side with linked zoom; a larger upload read
as a batch, with its results and summary to download."""

from __future__ import annotations

import streamlit as st

from imaging import MODALITIES, ImageInputError
from imaging.archive import expand_uploads
from models.registry import ModelUnavailable, default_weights_dir
from models.route import describe
from models.worklist import INTERACTIVE_LIMIT, batch_classes, read_as_batch, read_worklist, to_csv
from pages import (
    AUTOMATIC,
    cached_model,
    cached_router,
    keep_settings,
    model_figures,
    page_header,
    session_map_cache,
)
from xai import available_methods, method_label
from xai.overlay import COLORBLIND_SAFE, COLORMAPS
from xai.viewer import ORIGINAL, VIEWS, Style, data_uri, linked_figure

METHODS = ["gradcam", "hirescam", "haycam_plus"]
SETTINGS = {"worklist-view": ORIGINAL, "worklist-cmap": Style().cmap,
            "worklist-alpha": Style().alpha, "worklist-method": METHODS[0]}
MAX_SIDE = 1024
BATCH_COLUMNS = ["file", "modality", "label", "confidence", "warnings", "error"]
BATCH_ROWS_SHOWN = 100
THUMBNAIL = 96
COLUMNS = {"image": st.column_config.ImageColumn("image", width="small"),
           "confidence": st.column_config.ProgressColumn("confidence", format="percent",
                                                         min_value=0.0, max_value=1.0),
           "warnings": st.column_config.TextColumn("warnings", width="large")}

page_header("Worklist")
keep_settings(SETTINGS)
cache = session_map_cache()
weights_path = default_weights_dir()
weights = str(weights_path)

uploads = st.file_uploader("Images, .zip archives of images, or a DICOM series (select every "
                           "file)", accept_multiple_files=True, key="worklist-upload")
choice = st.selectbox("Modality", [AUTOMATIC, *MODALITIES], key="worklist-modality",
                      format_func=lambda m: "automatic" if m == AUTOMATIC else describe(m),
                      help="Automatic: each file's DICOM Modality tag, else the modality router. "
                           "Choose one to insist for every file.")
if not uploads:
    st.info("Upload several images (or a .zip) to fill the worklist.")
    st.stop()

key = (tuple(u.file_id for u in uploads), choice, weights)
modality = None if choice == AUTOMATIC else choice
expanded = st.session_state.get("worklist-files")
if expanded is None or expanded[0] != key:
    try:
        files, problems = expand_uploads((u.name, u.getvalue()) for u in uploads)
    except ImageInputError as exc:
        st.error(f"{exc} Read larger sets with `python -m models.batch FOLDER --out DIR`.")
        st.stop()
    expanded = st.session_state["worklist-files"] = (key, files, problems)
_, files, problems = expanded
for problem in problems:
    st.warning(problem)

if len(files) > INTERACTIVE_LIMIT:
    st.info(f"{len(files)} files: more than the {INTERACTIVE_LIMIT} this table reads one by one, "
            "so they are read as a batch (the road of `python -m models.batch`): predicted, "
            "ranked, the top ones explained, and handed back as a results table and a summary "
            "page with the maps, to download. Nothing is written to the server's disk.")
    left, right = st.columns(2)
    rank_by = left.selectbox("Rank by the probability of", [None, *batch_classes(weights_path,
                                                                                modality)],
                             format_func=lambda c: "nothing (input order)" if c is None else c,
                             key="worklist-rank-by")
    top = right.number_input("Heat maps for the top", 0, 50, 10, key="worklist-top",
                             disabled=rank_by is None,
                             help="Drawn for the ranked class on the highest-ranked images.")
    if st.button("Read as a batch", type="primary", key="worklist-batch-start"):
        progress = st.progress(0.0, text=f"Reading {len(files)} files...")
        read = [0]

        def advance(images: int) -> None:
            read[0] += images
            progress.progress(min(1.0, read[0] / len(files)),
                              text=f"{read[0]} images predicted ({len(files)} files)")

        with st.spinner("Reading the batch (heat maps come last)..."):
            run = read_as_batch(files, weights_path, modality=modality, rank_by=rank_by,
                                explain_top=int(top), on_images=advance)
        progress.empty()
        st.session_state["worklist-batch"] = (key, rank_by, run)
    finished = st.session_state.get("worklist-batch")
    if finished is None or finished[0] != key:
        st.stop()
    _, ranked_by, run = finished
    numbers = ["confidence", *([f"p_{ranked_by}"] if ranked_by else [])]
    shown = [{**{c: row[c] for c in BATCH_COLUMNS},
              **{c: float(row[c]) if row[c] else None for c in numbers}}
             for row in run.rows[:BATCH_ROWS_SHOWN]]
    st.markdown(f"**{len(run.rows)} images**, {sum(1 for r in run.rows if not r['error'])} "
                f"predicted, {sum(1 for r in run.rows if r['warnings'])} with warnings"
                + (f"; ranked by p({ranked_by})" if ranked_by else "") + f". The first "
                f"{len(shown)} rows:")
    st.dataframe(shown, hide_index=True, width="stretch", column_config={
        c: st.column_config.ProgressColumn(c, format="percent", min_value=0.0, max_value=1.0)
        for c in numbers})
    left, right = st.columns(2)
    left.download_button("Results (CSV)", run.results_csv, file_name="medxai-batch-results.csv",
                         mime="text/csv", on_click="ignore",
                         help="Every image: label, probabilities, trust signals; base names only.")
    right.download_button("Summary with heat maps (HTML)", run.summary_html,
                          file_name="medxai-batch-summary.html", mime="text/html",
                          on_click="ignore", help="Opens offline: counts, ranked list, maps.")
    st.stop()

stored = st.session_state.get("worklist")
if stored is None or stored[0] != key:
    progress = st.progress(0.0, text=f"Reading {len(files)} files...")
    table_so_far = st.empty()
    items, rows = [], []
    for item in read_worklist(files, cached_router(weights),
                              lambda modality, task: cached_model(modality, weights, task),
                              modality=modality):
        items.append(item)
        rows.append({"image": None if item.image is None else
                     data_uri(cache.thumbnail(item.digest, item.image.rgb, THUMBNAIL)),
                     **item.row()})
        progress.progress(len(items) / len(files),
                          text=f"{len(items)} of {len(files)} read: {item.name}")
        table_so_far.dataframe(rows, hide_index=True, column_config=COLUMNS)
    progress.empty()
    table_so_far.empty()
    stored = st.session_state["worklist"] = (key, items, rows)
_, items, rows = stored

done = [i for i, item in enumerate(items) if item.prediction is not None]
st.markdown(f"**{len(items)} files**, {len(done)} with a label; "
            f"{sum(bool(item.warnings) for item in items)} with warnings (their labels are "
            "not reliable). Click a column to sort, a row to open it below.")
table = st.dataframe(rows, hide_index=True, width="stretch", key="worklist-table",
                     on_select="rerun", selection_mode="single-row", column_config=COLUMNS)
st.download_button("Worklist (CSV)", lambda: to_csv(items), file_name="medxai-worklist.csv",
                   mime="text/csv", on_click="ignore",
                   help="File base names and results only: no folder, nothing from headers.")
if not done:
    st.stop()

st.subheader("Viewer")
left, middle, right = st.columns(3)
mode = left.radio("Show the maps on", VIEWS, key="worklist-view", horizontal=True)
cmap = middle.selectbox("Colour map", list(COLORMAPS), key="worklist-cmap",
                        format_func=lambda n: f"{n} (colour-blind safe)"
                        if n in COLORBLIND_SAFE else n)
alpha = right.slider("Opacity", 0.0, 1.0, step=0.05, key="worklist-alpha")
style = Style(cmap, alpha)
chosen = [i for i in table.selection.rows if items[i].prediction is not None]
if not chosen:
    st.info("Select a row with a label to open its maps here.")
else:
    item = items[chosen[0]]
    loaded = cached_model(item.routing.modality, weights, item.task)
    with st.spinner("Computing heat maps..."):
        explanations = cache.explain(loaded, item.digest, item.image.rgb, METHODS,
                                     [item.prediction.index], item.prediction)
    st.markdown(f"**{item.name}**: {item.prediction.label} ({item.prediction.confidence:.1%})"
                + (" - not reliable, see its warnings" if item.warnings else ""))
    model_figures(loaded.card)
    panels, extent = cache.panels(loaded, item.digest, item.image.rgb, explanations,
                                  dict.fromkeys(METHODS, style), mode=mode, outline=False,
                                  max_side=MAX_SIDE)
    st.plotly_chart(linked_figure(panels, extent), key="worklist-viewer", width="stretch",
                    config={"scrollZoom": True, "displaylogo": False})

st.subheader("Side by side (e.g. prior and current study)")
if len(done) < 2:
    st.info("Two files with a label are needed.")
    st.stop()
label = {i: f"{n + 1}. {items[i].name}" for n, i in enumerate(done)}
c1, c2, c3 = st.columns(3)
prior = c1.selectbox("Prior", done, index=0, format_func=label.get, key="worklist-prior")
current = c2.selectbox("Current", done, index=1, format_func=label.get, key="worklist-current")
choices = [m for m in available_methods(include_expensive=False) if m != "scorecam_fast"]
method = c3.selectbox("Method", choices, format_func=method_label, key="worklist-method")
pair = [items[prior], items[current]]
if (pair[0].routing.modality, pair[0].task) != (pair[1].routing.modality, pair[1].task):
    st.warning("The two images are of different modalities or tasks: one model cannot explain "
               "both.")
    st.stop()
try:
    loaded = cached_model(pair[1].routing.modality, weights, pair[1].task)
except ModelUnavailable as exc:
    st.error(str(exc))
    st.stop()
target = pair[1].prediction.index  # both explain the current image's label
with st.spinner("Computing heat maps..."):
    explanations = [cache.explain(loaded, i.digest, i.image.rgb, [method], [target], i.prediction)[0]
                    for i in pair]
panels, extent = cache.side_by_side(
    loaded, [("Prior", pair[0].digest, pair[0].image.rgb),
             ("Current", pair[1].digest, pair[1].image.rgb)],
    explanations, style, mode=mode, outline=False, max_side=MAX_SIDE)
st.plotly_chart(linked_figure(panels, extent), key="worklist-pair", width="stretch",
                config={"scrollZoom": True, "displaylogo": False})
st.caption(f"Same model ({loaded.card.name}) and method; both maps explain "
           f"'{loaded.card.classes[target]}', the current image's label. Zoom or pan one panel "
           "and the others follow; the current image is scaled onto the prior's pixels.")
