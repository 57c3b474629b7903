"""End to end: with nothing chosen, each modality's image reaches its model; a photo and a CT
slice get a warning and no label (the shipped router and models, a real browser)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS

EXAMPLES = {  # folder -> (what the page says, the model's classes)
    "brain-tumor-mri/meningioma": ("brain MRI", {"glioma", "meningioma", "notumor", "pituitary"}),
    "chest-xray-pneumonia/normal": ("X-ray", {"normal", "pneumonia"}),
    "wce-bleeding/non-bleeding": ("endoscopy", {"bleeding", "non-bleeding"}),
    "lc25000-lung/lung_n": ("histology", {"lung_aca", "lung_n", "lung_scc"}),
}


def _open_and_upload(page, server: str, path: Path) -> None:
    page.goto(f"{server}/Predict")
    page.get_by_text("Upload an image to start.").wait_for()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(path))


@pytest.mark.parametrize("folder", sorted(EXAMPLES))
def test_each_modality_is_routed_to_its_model(page, shipped_server: str, shared_data: Path,
                                              folder: str) -> None:
    name, classes = EXAMPLES[folder]
    _open_and_upload(page, shipped_server, sorted((shared_data / folder).glob("*.jpg"))[0])
    page.get_by_text(f"Modality: {name}").wait_for()
    assert page.get_by_text("detected").count() >= 1
    page.get_by_role("button", name="Predict").click()
    value = page.locator('[data-testid="stMetricValue"]')
    value.wait_for()
    assert value.inner_text().strip() in classes
    assert page.locator('[data-testid="stException"]').count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"routed-{folder.split('/')[0]}.png"), full_page=True)


def test_a_photo_and_a_ct_slice_get_a_warning_and_no_label(page, shipped_server: str,
                                                           tmp_path: Path) -> None:
    from PIL import Image
    from pydicom.data import get_testdata_file
    from skimage import data

    from imaging import load_path

    photo, ct = tmp_path / "photo.png", tmp_path / "ct-slice.png"
    Image.fromarray(data.astronaut()).save(photo)
    Image.fromarray(load_path(get_testdata_file("CT_small.dcm")).rgb).save(ct)  # tag gone
    for path in (photo, ct):
        _open_and_upload(page, shipped_server, path)
        page.get_by_text("does not look like any modality").wait_for()
        assert page.get_by_role("button", name="Predict").count() == 0
        assert page.locator('[data-testid="stMetricValue"]').count() == 0
        page.screenshot(path=str(ARTIFACTS / f"refused-{path.stem}.png"), full_page=True)
