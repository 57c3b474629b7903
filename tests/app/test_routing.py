"""The Predict page routes an upload on its own (shipped router and models, AppTest)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from models.card import ModelCard
from models.registry import find_router, registry_status
from tests.app.session import button, open_page, upload


@pytest.fixture(autouse=True)
def shipped_models() -> None:
    try:
        find_router()
    except Exception as exc:  # noqa: BLE001 - any reason to have no router skips
        pytest.skip(f"no shipped router: {exc}")
    if not all(isinstance(entry, ModelCard) for entry in registry_status().values()):
        pytest.skip("not every modality has a shipped model")


def test_an_mri_jpeg_with_nothing_chosen_gets_an_mri_label(shared_data: Path) -> None:
    image = sorted((shared_data / "brain-tumor-mri" / "pituitary").glob("*.jpg"))[0]
    at = upload(open_page("predict"), image.name, image.read_bytes())
    assert any("**Modality: brain MRI**" in m.value and "detected" in m.value for m in at.markdown)
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in ("glioma", "meningioma", "notumor", "pituitary")


def test_a_photo_gets_a_warning_and_no_label() -> None:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.coffee()).save(buf, "PNG")
    at = upload(open_page("predict"), "coffee.png", buf.getvalue())
    assert any("does not look like any modality" in w.value for w in at.warning)
    assert not any(b.label == "Predict" for b in at.button) and not at.metric
    at.selectbox(key="predict-modality").set_value("endoscopy").run()  # the user insists
    assert any("you chose endoscopy, so the label below is not reliable" in w.value
               for w in at.warning)
    button(at, "Predict").click().run()
    assert at.metric[0].label == "Prediction (not reliable)"
