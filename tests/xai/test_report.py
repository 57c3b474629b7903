from __future__ import annotations

import contextlib
import io
import re
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from imaging import load_image
from models.registry import load_for_modality
from xai import explain_loaded
from xai.overlay import overlay
from xai.report import DISCLAIMER, build_report_content, report_html, report_pdf

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
    assert page.count("data:image/png;base64,") == 1 + len(explanation.maps)
    assert "Grad-CAM" in page and "HayCAM+" in page


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
    import cv2

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
