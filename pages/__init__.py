"""Widgets shared by the app's pages: header, cached models, the upload reader, DICOM controls.

Streamlit glue only; the work is done by ``imaging``, ``models`` and ``xai``. This file is the
``pages`` package itself, so Streamlit does not list it as a page.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.formparsers import MultiPartParser

from imaging import MODALITIES, ImageInputError, LoadedImage, Window, load_image
from imaging.archive import content_digest
from models.card import DEFAULT_TASKS, TASKS, ModelCard
from models.card_text import headline_text
from models.registry import LoadedModel, ModelUnavailable, default_weights_dir, load_for_modality
from models.route import Routing, describe, load_router, route
from xai.viewer import EVERY_CLASS, MapCache

PREDICTED = "predicted class"
DISCLAIMER = ("Research and decision-support tool, **not a diagnosis**: a qualified clinician "
              "must review every result.")

# Streamlit's upload endpoint parses the request with Starlette, which moves a file part larger
# than 1 MiB into an (unnamed) temporary file on disk. Raise that threshold above the largest
# upload the server accepts, so uploads stay in memory (the app reads them into memory anyway).
MultiPartParser.spool_max_size = (st.get_option("server.maxUploadSize") + 1) * 2**20


def _through_app_navigation() -> None:
    """Reach every page through app.py's ``st.navigation`` (the sidebar's names).

    A folder called ``pages/`` beside the entry script makes Streamlit run a page file on its
    own (its first multipage mode: a sidebar entry named "app") until the process has run
    ``st.navigation`` once, i.e. until someone opens Home. A browser that lands on another page
    first switches the process over here and reruns, through app.py.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_header(title: str, *, prominent: bool = False) -> None:
    """Page setup, title and the disclaimer every page carries (a warning box if ``prominent``)."""
    _through_app_navigation()
    st.set_page_config(page_title=f"MedXAI - {title}", layout="wide")
    st.title(title)
    (st.warning if prominent else st.caption)(DISCLAIMER)
    st.sidebar.caption("Research tool, not a diagnosis. Uploads stay in memory and are never "
                       "saved.")


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def cached_model(modality: str, weights_dir: str | None = None, task: str | None = None
                 ) -> LoadedModel:
    """The verified default model of ``modality`` and ``task`` (``None``: the modality's
    default) in ``weights_dir`` (default: the registry's), loaded once per process and shared."""
    return load_for_modality(modality, Path(weights_dir) if weights_dir else None, task=task)


def model_or_error(modality: str, task: str | None = None) -> LoadedModel | None:
    """The model, or ``None`` after showing why this modality or task is unavailable."""
    try:
        return cached_model(modality, str(default_weights_dir()), task)
    except ModelUnavailable as exc:
        st.error(str(exc))
        return None


@st.cache_data(show_spinner="Reading the image...", max_entries=8)
def _decode(data: bytes, name: str, frame: int | None, window: Window | None) -> LoadedImage:
    return load_image(data, name=name, frame=frame, window=window)


def image_upload(key: str) -> tuple[LoadedImage, str] | None:
    """Upload widget plus DICOM frame/window controls; the decoded image and its digest.

    Shows one ``st.error`` and returns ``None`` for a file that cannot be read.
    """
    # Any file name: PACS exports often have no extension; the reader tells formats by content.
    uploaded = st.file_uploader("Image (PNG, JPEG, TIFF, BMP, GIF, WebP or DICOM, with or "
                                "without extension)", key=f"{key}-upload")
    if uploaded is None:
        return None
    data = uploaded.getvalue()
    try:
        image = _decode(data, uploaded.name, None, None)
        if image.meta.get("format") == "dicom":
            frame, window = _dicom_controls(image, key)
            if frame is not None or window is not None:
                image = _decode(data, uploaded.name, frame, window)
    except ImageInputError as exc:
        st.error(f"Cannot use {uploaded.name}: {exc}")
        return None
    return image, content_digest(data) + f"-{image.meta.get('frame')}-{image.meta.get('window')}"


def _dicom_controls(image: LoadedImage, key: str) -> tuple[int | None, Window | None]:
    frames = int(image.meta.get("frame_count") or 1)
    frame = None
    with st.expander("DICOM display", expanded=False):
        if frames > 1:
            frame = st.slider("Frame", 0, frames - 1, int(image.meta.get("frame") or 0),
                              key=f"{key}-frame")
        file_window = image.meta.get("window")
        custom = st.checkbox("Set window centre / width", key=f"{key}-custom-window")
        if not custom:
            return frame, None
        center0, width0 = file_window if file_window else (128.0, 256.0)
        col1, col2 = st.columns(2)
        center = col1.number_input("Window centre", value=float(center0), key=f"{key}-center")
        width = col2.number_input("Window width", value=float(width0), min_value=1.0,
                                  key=f"{key}-width")
    return frame, Window(center, width)


AUTOMATIC = "automatic"


@st.cache_resource(show_spinner="Loading the modality router...")
def cached_router(weights_dir: str) -> LoadedModel | None:
    """The modality router of ``weights_dir`` (``None`` without one), loaded once per process."""
    return load_router(Path(weights_dir))


def tasks_of(choice: str) -> list[str]:
    """The tasks the task box offers for the modality box's ``choice`` (every task when the
    modality is automatic: a task implies its modality)."""
    return [task for task, spec in TASKS.items() if choice in (AUTOMATIC, spec.modality)]


def modality_routing(image: LoadedImage, key: str, digest: str) -> Routing:
    """Modality and task boxes (automatic by default: the DICOM tag, else the router) and what
    they decided. Decided once per image and choice, not on every rerun."""
    left, right = st.columns(2)
    choice = left.selectbox(
        "Modality", [AUTOMATIC, *MODALITIES], key=f"{key}-modality",
        format_func=lambda m: "automatic" if m == AUTOMATIC else describe(m),
        help="Automatic: the DICOM Modality tag when present, else the modality router. "
             "Choose one to insist.")
    task = right.selectbox(
        "Task", [AUTOMATIC, *tasks_of(choice)], key=f"{key}-task",
        format_func=lambda t: "automatic" if t == AUTOMATIC else describe(t),
        help="Automatic: the task the modality router reads in the image (e.g. capsule "
             "endoscopy or colonoscopy), else the modality's default model. Choose one to "
             "insist.")
    weights = str(default_weights_dir())
    decided = (digest, choice, task, weights)
    stored = st.session_state.get(f"{key}-routing")
    if stored is None or stored[0] != decided:
        stored = decided, route(image, cached_router(weights),
                                None if choice == AUTOMATIC else choice,
                                None if task == AUTOMATIC else task)
        st.session_state[f"{key}-routing"] = stored
    return stored[1]


def routing_summary(routing: Routing, task: str) -> str:
    """The "Modality: ..." line: the modality, the task its model reads, and who decided."""
    reading = routing.router
    origin = {"dicom": "from the DICOM header", "router": "detected",
              "user": "your choice"}[routing.source]
    detected = (f"; the router reads {describe(reading.label)} ({reading.confidence:.0%})"
                if reading is not None and routing.source != "router" else "")
    confidence = f" ({routing.confidence:.0%})" if routing.source == "router" else ""
    return (f"**Modality: {describe(routing.modality)}**{confidence}, task: "
            f"**{describe(task)}**, {origin}{detected}")


def model_figures(card: ModelCard) -> None:
    """The line under a prediction: which model answered and how good it is on its test split."""
    st.caption(f"Model **{card.name}**. {headline_text(card)}")


def image_and_model(key: str, prompt: str) -> tuple[LoadedImage, str, LoadedModel, Routing]:
    """Upload, routing and the model of the routed task; stops the page with ``prompt``, a
    warning or the error."""
    upload = image_upload(key)
    if upload is None:
        st.info(prompt)
        st.stop()
    image, digest = upload
    routing = modality_routing(image, key, digest)
    summary = st.empty()  # filled once the model, and so the task, is known
    for warning in routing.warnings:
        st.warning(warning, icon=":material/warning:")
    if routing.modality is None:
        if routing.router is None:
            st.warning("No modality router is installed and the file has no DICOM Modality "
                       "tag: choose the modality.")
        st.stop()
    loaded = model_or_error(routing.modality, routing.task)
    summary.markdown(routing_summary(routing, loaded.card.task if loaded else
                                     routing.task or DEFAULT_TASKS[routing.modality]))
    if loaded is None:
        st.stop()
    return image, digest, loaded, routing


def target_choice(loaded: LoadedModel, container=st, *, every_class: bool = False) -> str | None:
    """The class the maps explain: ``None`` for the predicted class, else a class name, or
    (``every_class``) :data:`EVERY_CLASS`."""
    extra = [EVERY_CLASS] if every_class else []
    choice = container.selectbox("Explain class", [PREDICTED, *extra, *loaded.card.classes])
    return None if choice == PREDICTED else choice


def session_map_cache() -> MapCache:
    """This browser session's maps and rendered panels (kept across reruns, never on disk)."""
    if "map-cache" not in st.session_state:
        st.session_state["map-cache"] = MapCache()
    return st.session_state["map-cache"]


def keep_settings(defaults: dict[str, object], prefixes: tuple[str, ...] = ()) -> None:
    """Keep the values of these widget keys (and of every key starting with one of
    ``prefixes``) across runs in which their widgets are not drawn.

    Streamlit forgets a widget's value when a run ends without drawing it: replacing the upload
    passes through a run with no file, which stops the page before its controls, and the
    settings would snap back to their defaults. Values set through ``st.session_state`` are
    kept; widgets with these keys must then take no default of their own.
    """
    for key in [*defaults, *(k for k in st.session_state if str(k).startswith(prefixes))]:
        st.session_state[key] = st.session_state.get(key, defaults.get(key))
