from __future__ import annotations

import contextlib
import io
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from imaging import load_image
from models.registry import load_for_modality
from tests.conftest import register_tiny_model
from xai import explain_loaded
from xai.overlay import colorize, overlay
from xai.report import (
    CASE_NOTE_LIMIT,
    DISCLAIMER,
    build_report_content,
    clean_case_note,
    report_html,
    report_pdf,
)

# Distinctive values, so a chance match inside base64 or PDF streams is practically impossible.
PHI = {"PatientName": "Zyxwvutsr^Qponmlkji", "PatientID": "PID-778899331",
       "PatientBirthDate": "19120307", "AccessionNumber": "ACC-44556677",
       "InstitutionName": "Hospital Quixotic Umbrage"}


@pytest.fixture(scope="module")
def analysed(tiny_registry: Path):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("MR_small.dcm"))
    for key, value in PHI.items():
        setattr(ds, key, value)
    buf = io.BytesIO()
    ds.save_as(buf)
    image = load_image(buf.getvalue(), name="scan.dcm")
    loaded = load_for_modality("mri", tiny_registry, device="cpu")
    explanation = explain_loaded(loaded, image.rgb, methods=["gradcam", "haycam_plus"])
    overlays = {n: overlay(explanation.image, m) for n, m in explanation.maps.items()}
    content = build_report_content(explanation, loaded.card, overlays, image.meta,
                                   created=datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    return explanation, loaded, content


def _pdf_text(data: bytes) -> str:
    """Inflate every stream of a PDF and join them with the raw bytes, for text search."""
    chunks = [data.decode("latin-1")]
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):  # not every stream is deflated
            chunks.append(zlib.decompress(match.group(1)).decode("latin-1"))
    return "\n".join(chunks)


def test_html_report_has_everything(analysed) -> None:
    explanation, loaded, content = analysed
    page = report_html(content)
    assert explanation.label in page and DISCLAIMER in page
    assert loaded.card.sha256 in page and "2026-01-02 03:04 UTC" in page
    for name in loaded.card.classes:
        assert name in page
    assert page.count("data:image/png;base64,") == 1 + len(explanation.maps) + 1  # colour bar
    assert "Grad-CAM" in page and "HayCAM+" in page
    assert page.index("Heat maps") < page.index("Appendix") < page.index(loaded.card.sha256)


def test_pdf_report_is_a_pdf_with_the_prediction(analysed) -> None:
    explanation, loaded, content = analysed
    data = report_pdf(content)
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    text = _pdf_text(data)
    assert explanation.label in text and loaded.card.name in text
    assert "not a diagnosis" in text


def test_no_patient_identifier_reaches_the_report(analysed) -> None:
    _, _, content = analysed
    rendered = report_html(content) + _pdf_text(report_pdf(content))
    for value in PHI.values():
        for part in value.split("^"):
            assert part not in rendered, part


def test_report_needs_the_model_view(analysed) -> None:
    from dataclasses import replace

    explanation, loaded, _ = analysed
    with pytest.raises(ValueError, match="no image"):
        build_report_content(replace(explanation, image=None), loaded.card, {}, {})


def test_png_tiles_decode(analysed) -> None:
    _, _, content = analysed
    for _, png in content.maps:
        tile = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert tile is not None and tile.shape == (64, 64, 3)


def test_warnings_head_both_reports_and_mark_the_label(analysed) -> None:
    explanation, loaded, content = analysed
    assert not content.warnings and "NOT RELIABLE" not in content.title
    overlays = {n: overlay(explanation.image, m) for n, m in explanation.maps.items()}
    warning = "This image does not look like any modality the app has models for"
    flagged = build_report_content(explanation, loaded.card, overlays, {}, warnings=[warning],
                                   modality_source="user")
    assert "NOT RELIABLE" in flagged.title
    page = report_html(flagged)
    assert page.index(warning) < page.index("<h2>Prediction</h2>")
    assert ("Modality chosen by", "user") in flagged.summary
    assert warning in _pdf_text(report_pdf(flagged))


def _pdf_pages(data: bytes) -> list[str]:
    """The text content stream of each page, in order (fpdf2 writes one per page)."""
    pages = []
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):
            chunk = zlib.decompress(match.group(1)).decode("latin-1")
            if re.search(r"BT /F\d+ [\d.]+ Tf", chunk):  # sets a font: a page, not an image
                pages.append(chunk)
    return pages


def _words(page: str) -> str:
    """The text a page shows, wrapped lines joined by single spaces."""
    shown = re.findall(r"\((.*?)\) ?Tj", page.replace("\\(", "(").replace("\\)", ")"))
    return " ".join(" ".join(shown).split())


def test_page_one_is_what_a_clinician_files(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "mri", metrics={"accuracy": 0.9, "n": 50})
    loaded = load_for_modality("mri", tmp_path, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    explanation = explain_loaded(loaded, rgb, methods=["gradcam", "haycam_plus", "stages"])
    overlays = {n: overlay(explanation.image, m, cmap="inferno") for n, m in explanation.maps.items()}
    content = build_report_content(explanation, loaded.card, overlays, {}, cmap="inferno",
                                   warnings=["The model is uncertain: the label is not reliable."],
                                   case_note="Small lesion, left frontal; MRN 00123456 (prior 2025)")
    pages = _pdf_pages(report_pdf(content))
    assert len(pages) == 2
    first, appendix = (_words(page) for page in pages)
    assert pages[0].count(" Do") == 1 + 5 + 2  # image, 5 maps, a colour bar per row of four
    assert explanation.label in first and "not reliable" in first
    assert "Test accuracy 90.0% (95% CI 78.6-95.7%, n=50)" in first
    assert "Colour = relevance" in first
    assert "2 x 2 map, upsampled to 64 x 64" in first  # the tiny model's CAM grid
    assert "mean of 4 x 4 and 2 x 2 maps" in first  # the fused stage map
    assert "Small lesion, left frontal; MRN [number removed] (prior 2025)" in first
    assert "00123456" not in first + appendix
    assert f"Model {loaded.card.name}" in first
    assert loaded.card.sha256 not in first and loaded.card.sha256 in appendix
    assert "Shared forward + gradient pass" in appendix and "Code version" in appendix
    top = cv2.imdecode(np.frombuffer(content.colorbar_png, np.uint8), cv2.IMREAD_COLOR)[0, 0]
    assert tuple(top[::-1]) == tuple(colorize(np.ones((1, 1), np.float32), "inferno")[0, 0])


def test_case_note_is_cleaned() -> None:
    assert clean_case_note(None) == "" and clean_case_note("  ") == ""
    assert clean_case_note("DOB 1912-03-07, id 778 899 331\x07") == (
        "DOB [number removed], id [number removed]")
    assert clean_case_note("lesion 12 mm, 3 of 4 frames") == "lesion 12 mm, 3 of 4 frames"
    long = clean_case_note("x" * 5000)
    assert len(long) == CASE_NOTE_LIMIT and long.endswith("...")
