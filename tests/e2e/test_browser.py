"""End to end: a person's path through the app in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def _upload(page, path: Path) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(path))


def test_predict_a_real_mri(page, streamlit_server: str, shared_data: Path) -> None:
    image = sorted((shared_data / "brain-tumor-mri" / "glioma").glob("*.jpg"))[0]
    page.goto(f"{streamlit_server}/Predict")
    page.get_by_text("Upload an image to start.").wait_for()
    _upload(page, image)
    page.get_by_role("combobox", name="Modality").click()  # the tiny registry has no router
    page.get_by_role("option", name="brain MRI", exact=True).click()
    page.get_by_role("button", name="Predict").click()
    metric = page.locator('[data-testid="stMetricValue"]')
    metric.wait_for()
    assert metric.inner_text().strip() in CLASSES
    viewer = page.locator(".js-plotly-plot g.imagelayer image")
    viewer.nth(3).wait_for(state="attached")  # the upload and three overlays
    titles = page.locator(".js-plotly-plot text.annotation-text").all_text_contents()
    for method in ("Grad-CAM", "HiResCAM", "HayCAM+"):
        assert any(t.startswith(f"{method} - ") for t in titles), titles
    preview = page.locator('[data-testid="stImage"] img').first
    assert preview.evaluate("img => img.complete && img.naturalWidth > 0")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "predict.png"), full_page=True)


def test_corrupt_upload_shows_an_error(page, streamlit_server: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    page.goto(f"{streamlit_server}/Predict")
    page.get_by_text("Upload an image to start.").wait_for()
    _upload(page, broken)
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="Cannot use broken.png")
    alert.wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "predict-error.png"), full_page=True)


def test_dicom_prefills_the_modality(page, streamlit_server: str, tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    # DX says xray; without the tag and without a router the page would ask for the modality.
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.Modality = "DX"
    dicom = tmp_path / "scan.dcm"
    ds.save_as(dicom)
    page.goto(f"{streamlit_server}/Predict")
    page.get_by_text("Upload an image to start.").wait_for()
    _upload(page, dicom)
    page.get_by_role("button", name="Predict").wait_for()
    page.get_by_text("Modality: X-ray").wait_for()
    assert page.get_by_text("from the DICOM header").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "predict-dicom.png"), full_page=True)


@pytest.mark.parametrize("path", ["", "Predict", "Worklist", "Compare", "Models"])
def test_every_page_loads(page, streamlit_server: str, path: str) -> None:
    page.goto(f"{streamlit_server}/{path}")
    page.locator('[data-testid="stMainBlockContainer"] h1').first.wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0
