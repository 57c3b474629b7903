"""Patient identifiers written into uploaded files reach no metadata, error, page, report or log.

The real server's output and the disk are checked in tests/e2e/test_patient_data_browser.py,
which imports the builders and detectors below. Each kind of check has a control proving it
would see an identifier that did get through.
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin
from pydicom.dataset import Dataset
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Node

from imaging import ImageInputError, Limits, LoadedImage, load_image
from models.registry import WEIGHTS_DIR_ENV, LoadedModel, load_for_modality
from tests.app.session import button, open_page, upload, viewer_figure
from tests.conftest import TINY_CLASSES
from tests.imaging.builders import dicom_bytes, encode
from xai import Explanation, explain_loaded
from xai.overlay import overlay
from xai.report import build_report_content, report_html, report_pdf

# Distinctive, valid values for the identifying attributes of a DICOM header.
PHI: dict[str, str] = {
    "PatientName": "Zzphidoe^Janettequa",
    "PatientID": "ZZPID48151623",
    "PatientBirthDate": "19230417",
    "PatientAddress": "12 Zzelmwood Street",
    "AccessionNumber": "ZZACC90713",
    "InstitutionName": "Zzquux Memorial Hospital",
    "ReferringPhysicianName": "Zzrefhouse^Gregorius",
    "StudyID": "ZZSTUDY77",
    "StudyDate": "19990721",
    "StudyInstanceUID": "1.2.826.0.1.3680043.9.7777.4815162342",
}
DICOM_SAMPLES = (
    "MR_small.dcm",
    "CT_small.dcm",
    "JPEG2000.dcm",
    "SC_rgb_rle_2frame.dcm",
    "examples_palette.dcm",
)
PREDICT_METHODS = ["gradcam", "hirescam", "haycam_plus"]  # the Predict page's default maps


def _forms(value: str) -> tuple[str, ...]:
    """How a value could show up: as stored, each person-name component, a date in ISO form."""
    forms = {value, *value.split("^")}
    if value.isdigit() and len(value) == 8:
        forms.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
    return tuple(forms)


NEEDLES = {keyword: _forms(value) for keyword, value in PHI.items()}


def leaked(content: str | bytes) -> list[str]:
    """The keywords of the identifiers found in ``content`` (case-insensitive)."""
    text = (content.decode("latin-1") if isinstance(content, bytes) else content).lower()
    return [
        keyword for keyword, forms in NEEDLES.items() if any(form.lower() in text for form in forms)
    ]


def with_phi(ds: Dataset) -> None:
    """Write every identifier of :data:`PHI` into ``ds``."""
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)


def phi_dicom(name: str = "MR_small.dcm", *edits: Callable[[Dataset], None]) -> bytes:
    """A bundled pydicom sample carrying :data:`PHI`, after further ``edits``."""

    def edit(ds: Dataset) -> None:
        for change in (with_phi, *edits):
            change(ds)

    return dicom_bytes(name, edit)


def pdf_text(pdf: bytes) -> str:
    """The PDF with its content streams inflated (fpdf2 writes text as strings in them)."""
    parts = [pdf]
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, flags=re.DOTALL):
        try:
            parts.append(zlib.decompress(stream))
        except zlib.error:
            parts.append(stream)
    return b"\n".join(parts).decode("latin-1")


def rendered_text(at: AppTest) -> str:
    """Every field of every element and container in the page, as protobuf text."""

    def walk(node: Node) -> Iterator[str]:
        if getattr(node, "proto", None) is not None:
            yield str(node.proto)
        for child in getattr(node, "children", {}).values():
            yield from walk(child)

    return "\n".join(walk(at._tree))


@pytest.fixture
def all_output(
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[], str]]:
    """Everything logged, warned or printed (fd level) in the test, as one text.

    Every logger is at DEBUG, pydicom's and Pillow's included, with pydicom's element dump on.
    """
    monkeypatch.setattr(pydicom.config, "debugging", True)
    for logger in (None, "pydicom", "PIL"):
        caplog.set_level(logging.DEBUG, logger=logger)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield lambda: "\n".join(
            [caplog.text, *capfd.readouterr(), *(str(warning.message) for warning in caught)]
        )


def _tiff() -> bytes:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270] = PHI["PatientName"]  # ImageDescription (Pillow quotes values up to 32 bytes)
    tags[315] = PHI["ReferringPhysicianName"]  # Artist
    return encode(Image.new("L", (32, 32)), "TIFF", tiffinfo=tags)


def _jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = PHI["PatientName"]  # ImageDescription
    exif[0x013B] = PHI["ReferringPhysicianName"]  # Artist
    return encode(Image.new("RGB", (32, 32)), "JPEG", exif=exif.tobytes())


def _png() -> bytes:
    text = PngImagePlugin.PngInfo()
    text.add_text("Patient", PHI["PatientName"])
    return encode(Image.new("L", (32, 32)), "PNG", pnginfo=text)


# Built at collection, outside the capture (Pillow logs the tags it writes, too).
PHI_MR = phi_dicom()
PIXELS_AT = PHI_MR.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
RASTERS = {"tiff": _tiff(), "jpeg": _jpeg(), "png": _png()}


def _without_pixels(ds: Dataset) -> None:
    del ds.PixelData


def test_samples_carry_every_identifier_and_the_detector_finds_them() -> None:
    for name in DICOM_SAMPLES:
        assert leaked(str(pydicom.dcmread(io.BytesIO(phi_dicom(name))))) == list(PHI), name


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda: pydicom.dcmread(io.BytesIO(PHI_MR)), id="pydicom element dump"),
        pytest.param(lambda: Image.open(io.BytesIO(RASTERS["tiff"])).load(), id="Pillow TIFF tags"),
    ],
)
def test_libraries_quote_identifiers_unless_the_loader_silences_them(
    read: Callable[[], object], all_output: Callable[[], str]
) -> None:
    """Control: called directly, pydicom and Pillow log header values; the capture sees them."""
    read()
    assert "PatientName" in leaked(all_output())


@pytest.mark.parametrize("data", [pytest.param(phi_dicom(name), id=name) for name in DICOM_SAMPLES])
def test_dicom_metadata_and_load_logs_hold_no_identifier(
    data: bytes, all_output: Callable[[], str]
) -> None:
    image = load_image(data, name="scan.dcm")
    assert image.meta["format"] == "dicom"
    assert leaked(repr(image.meta) + json.dumps(image.meta, default=str)) == []
    assert leaked(all_output()) == []


@pytest.mark.parametrize("fmt", list(RASTERS))
def test_raster_text_metadata_stays_out_of_metadata_and_logs(
    fmt: str, all_output: Callable[[], str]
) -> None:
    """TIFF tags, EXIF and PNG text chunks (Pillow logs the first two at DEBUG while reading)."""
    image = load_image(RASTERS[fmt])
    assert leaked(repr(image.meta)) == []
    assert leaked(all_output()) == []
    assert (
        logging.getLogger("PIL").getEffectiveLevel() == logging.DEBUG
    )  # silenced only while loading


@pytest.mark.parametrize(
    ("data", "options"),
    [
        pytest.param(PHI_MR[: PIXELS_AT + 100], {}, id="pixel data cut short"),
        pytest.param(phi_dicom("MR_small.dcm", _without_pixels), {}, id="no pixel data"),
        pytest.param(PHI_MR, {"frame": 3}, id="frame out of range"),
        pytest.param(PHI_MR, {"limits": Limits(max_pixels=100)}, id="too many pixels"),
        pytest.param(PHI_MR, {"limits": Limits(max_bytes=1000)}, id="too many bytes"),
    ],
)
def test_errors_quote_no_identifier(
    data: bytes, options: dict[str, object], all_output: Callable[[], str]
) -> None:
    with pytest.raises(ImageInputError) as caught:
        load_image(data, name="scan.dcm", **options)
    assert leaked(f"{caught.value} {caught.value!r}") == []
    assert leaked(all_output()) == []


def _analyse(data: bytes, root: Path) -> tuple[LoadedImage, LoadedModel, Explanation]:
    """What the Predict page does with an upload: decode, pick the model, predict and explain."""
    image = load_image(data, name="scan.dcm")
    loaded = load_for_modality(str(image.suggested_modality), root)
    return image, loaded, explain_loaded(loaded, image.rgb, methods=PREDICT_METHODS)


def _reports(
    explanation: Explanation, loaded: LoadedModel, meta: dict[str, object]
) -> tuple[str, bytes]:
    """The HTML and PDF reports, built from what the Predict page passes."""
    overlays = {name: overlay(explanation.image, cam) for name, cam in explanation.maps.items()}
    content = build_report_content(explanation, loaded.card, overlays, meta)
    return report_html(content), report_pdf(content)


def test_predict_explain_and_reports_show_and_log_no_identifier(
    tiny_registry: Path, all_output: Callable[[], str]
) -> None:
    image, loaded, explanation = _analyse(PHI_MR, tiny_registry)
    html, pdf = _reports(explanation, loaded, image.meta)
    assert explanation.label in loaded.card.classes and image.meta["modality"] == "MR"
    assert leaked(html) == []
    assert leaked(pdf_text(pdf)) == []
    assert leaked(all_output()) == []


def test_control_reports_would_show_an_identifier_in_the_image_metadata(
    tiny_registry: Path,
) -> None:
    image, loaded, explanation = _analyse(PHI_MR, tiny_registry)
    html, pdf = _reports(explanation, loaded, {**image.meta, "modality": PHI["PatientID"]})
    assert leaked(html) == ["PatientID"]
    assert leaked(pdf_text(pdf)) == ["PatientID"]


def _every_element_kind(phi: dict[str, str]) -> None:
    """A page putting one identifier into each kind of element the app uses."""
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go
    import streamlit as st

    values = list(phi.values())
    st.markdown(values[0])
    st.sidebar.caption(values[1])
    st.json({"value": values[2]})
    st.dataframe(pd.DataFrame({"value": [values[3]]}))
    with st.expander(values[4]):
        st.error(values[5])
    st.metric("metric", values[6])
    st.plotly_chart(go.Figure(go.Bar(x=[1.0], y=[values[7]], orientation="h")))
    st.image(np.zeros((4, 4, 3), dtype=np.uint8), caption=values[8])
    st.download_button(values[9], b"report")


def test_control_the_page_walk_reads_every_element_kind() -> None:
    at = AppTest.from_function(_every_element_kind, kwargs={"phi": PHI}, default_timeout=30).run()
    assert not at.exception
    assert leaked(rendered_text(at)) == list(PHI)


def test_predict_page_shows_no_identifier(
    tiny_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tiny_registry))
    at = upload(open_page("predict"), "scan.dcm", PHI_MR)
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in TINY_CLASSES["mri"]
    assert any(expander.label == "DICOM display" for expander in at.expander)
    assert leaked(rendered_text(at)) == []


def test_every_view_of_the_map_viewer_shows_no_identifier(
    tiny_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The viewer's panels, titles and axes on the uploaded image and on the model's view, for
    every class, at full resolution: nothing from the header."""
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tiny_registry))
    at = upload(open_page("predict"), "scan.dcm", PHI_MR)
    button(at, "Predict").click().run()
    next(s for s in at.selectbox if s.label == "Explain class").set_value(
        "every class (one row each)").run()
    at.selectbox(key="predict-side").set_value("full resolution").run()
    assert any("every class" in h.value for h in at.subheader)
    for view in ("original image", "what the model sees"):
        at.radio(key="predict-view").set_value(view).run()
        assert not at.exception and not at.error
        figure = viewer_figure(at)
        assert len([t for t in figure["data"] if t["type"] == "image"]) == 13
        assert leaked(rendered_text(at)) == [] and leaked(json.dumps(figure)) == []


def test_the_worklist_table_and_csv_show_no_identifier(
    tiny_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every bundled DICOM sample, identified, in one worklist: rows, CSV, page."""
    from models.worklist import to_csv

    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tiny_registry))
    at = open_page("worklist")
    at.selectbox(key="worklist-modality").set_value("mri").run()
    for i, name in enumerate(DICOM_SAMPLES):
        at.file_uploader[0].upload(f"IM{i:04d}", phi_dicom(name), "application/dicom")
    at.run()
    assert not at.exception and not at.error
    items = at.session_state["worklist"][1]
    assert [item.prediction is not None for item in items] == [True] * len(DICOM_SAMPLES)
    table = at.dataframe[0].value
    assert leaked(table.drop(columns="image").to_csv()) == []
    assert leaked(to_csv(items)) == [] and leaked(rendered_text(at)) == []


def _files_holding(text: str, roots: list[Path], since: float) -> list[Path]:
    """Files under ``roots`` changed since ``since`` (epoch seconds) that contain ``text``."""
    needle, found = text.encode(), []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if (path.is_file() and path.stat().st_mtime >= since
                        and path.stat().st_size < 50 * 2**20 and needle in path.read_bytes()):
                    found.append(path)
            except OSError:  # a file that vanished or cannot be read is not ours
                continue
    return found


def test_the_case_note_is_printed_on_the_report_only(
    tiny_registry: Path, monkeypatch: pytest.MonkeyPatch, all_output: Callable[[], str],
    tmp_path: Path,
) -> None:
    """A case note typed on the Predict page reaches the downloaded report and nothing else: no
    log, no warning, no file (the temporary folder and the repository are searched)."""
    import tempfile
    import time

    from tests.app.session import REPO, deferred_downloads

    note = f"Case note {PHI['PatientName']} seen in clinic"
    started = time.time() - 1
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tiny_registry))
    downloads = deferred_downloads(monkeypatch)
    at = upload(open_page("predict"), "scan.dcm", PHI_MR)
    button(at, "Predict").click().run()
    at.text_area(key="predict-case-note").input(note).run()
    assert not at.exception and not at.error
    html, pdf = downloads["medxai-report.html"](), downloads["medxai-report.pdf"]()
    assert note in html and note in pdf_text(pdf)  # the report is where the note goes
    assert note not in all_output()
    roots = [Path(tempfile.gettempdir()), REPO]
    assert _files_holding(note, roots, started) == []
    (tmp_path / "control.txt").write_text(note)  # control: the search finds a written note
    assert _files_holding(note, roots, started) == [tmp_path / "control.txt"]
