"""Widgets shared by the app's pages: header, cached models, the upload reader, DICOM controls.

Streamlit glue only; the work is done by ``imaging``, ``models`` and ``xai``. This file is the
``pages`` package itself, so Streamlit does not list it as a page.
"""

from __future__ import annotations

import hashlib

import streamlit as st
from starlette.formparsers import MultiPartParser

from imaging import MODALITIES, ImageInputError, LoadedImage, Window, load_image
from models.card import ModelCard
from models.registry import LoadedModel, ModelUnavailable, load_for_modality, registry_status

PREDICTED = "predicted class"
DISCLAIMER = ("Research and decision-support tool, **not a diagnosis**: a qualified clinician "
              "must review every result.")

# Streamlit's upload endpoint parses the request with Starlette, which moves a file part larger
# than 1 MiB into an (unnamed) temporary file on disk. Raise that threshold above the largest
# upload the server accepts, so uploads stay in memory (the app reads them into memory anyway).
MultiPartParser.spool_max_size = (st.get_option("server.maxUploadSize") + 1) * 2**20


def page_header(title: str, *, prominent: bool = False) -> None:
    """Page setup, title and the disclaimer every page carries (a warning box if ``prominent``)."""
    st.set_page_config(page_title=f"MedXAI - {title}", layout="wide")
    st.title(title)
    (st.warning if prominent else st.caption)(DISCLAIMER)
    st.sidebar.caption("Research tool, not a diagnosis. Uploads stay in memory and are never "
                       "saved.")


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def cached_model(modality: str) -> LoadedModel:
    """The verified default model of ``modality``, loaded once per process and shared."""
    return load_for_modality(modality)


def model_or_error(modality: str) -> LoadedModel | None:
    """The model, or ``None`` after showing why this modality is unavailable."""
    try:
        return cached_model(modality)
    except ModelUnavailable as exc:
        st.error(str(exc))
        return None


@st.cache_data(show_spinner="Reading the image...", max_entries=8)
def _decode(data: bytes, name: str, frame: int | None, window: Window | None) -> LoadedImage:
    return load_image(data, name=name, frame=frame, window=window)


def upload_digest(data: bytes) -> str:
    """Short content hash identifying an upload in session state (no file name, no metadata)."""
    return hashlib.sha256(data).hexdigest()[:16]


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
    return image, upload_digest(data) + f"-{image.meta.get('frame')}-{image.meta.get('window')}"


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


def modality_choice(image: LoadedImage, key: str) -> str:
    """Modality select box: the DICOM Modality tag's suggestion, else the first installed."""
    suggested = image.suggested_modality
    if suggested in MODALITIES:
        index = MODALITIES.index(suggested)
    else:  # the first modality that has a model installed
        status = registry_status()
        index = next((i for i, m in enumerate(MODALITIES) if isinstance(status[m], ModelCard)), 0)
    help_text = "Pre-filled from the DICOM Modality tag." if suggested else None
    return st.selectbox("Modality", MODALITIES, index=index, key=f"{key}-modality-{suggested}",
                        help=help_text)


def image_and_model(key: str, prompt: str) -> tuple[LoadedImage, str, LoadedModel]:
    """Upload, modality and its model; stops the page with ``prompt`` or the error if missing."""
    upload = image_upload(key)
    if upload is None:
        st.info(prompt)
        st.stop()
    image, digest = upload
    loaded = model_or_error(modality_choice(image, key))
    if loaded is None:
        st.stop()
    return image, digest, loaded


def target_choice(loaded: LoadedModel, container=st) -> str | None:
    """The class the maps explain: ``None`` for the predicted class, else a class name."""
    choice = container.selectbox("Explain class", [PREDICTED, *loaded.card.classes])
    return None if choice == PREDICTED else choice
