"""Every page driven through Streamlit's AppTest, on a tiny registered model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app.session import PAGES, REPO, button, open_page, upload


@pytest.fixture(autouse=True)
def weights_env(monkeypatch: pytest.MonkeyPatch, tiny_registry: Path) -> Path:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tiny_registry))
    return tiny_registry


def _png(seed: int = 0, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_predict_shows_label_probabilities_and_default_maps() -> None:
    at = upload(open_page("predict"), "scan.png", _png())
    at.selectbox(key="predict-modality").set_value("mri").run()
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    metric = at.metric[0]
    assert metric.label.startswith("Prediction")
    assert metric.value in ("glioma", "meningioma", "notumor", "pituitary")
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    for method in ("Grad-CAM", "HiResCAM", "HayCAM+"):
        assert any(c and c.startswith(f"{method} - ") for c in captions), captions
    labels = {b.label for b in at.get("download_button")}
    assert labels == {"Overlays (PNG)", "Report (HTML)", "Report (PDF)"}


def test_display_controls_reuse_the_maps_and_methods_recompute() -> None:
    at = upload(open_page("predict"), "scan.png", _png(1))
    at.selectbox(key="predict-modality").set_value("xray").run()
    button(at, "Predict").click().run()
    first = at.session_state["predict"][2]
    next(s for s in at.selectbox if s.label == "Colour map").set_value("inferno").run()
    next(s for s in at.slider if s.label == "Opacity").set_value(0.8).run()
    assert at.session_state["predict"][2] is first  # re-rendered, not recomputed
    assert not at.exception
    next(m for m in at.multiselect if m.label == "Methods").set_value(["eigencam"]).run()
    assert any("Press **Predict**" in i.value for i in at.info)  # stale result not shown
    button(at, "Predict").click().run()
    assert at.session_state["predict"][2] is not first
    assert list(at.session_state["predict"][2].maps) == ["eigencam"]


def test_bad_upload_shows_one_error_and_the_page_stays_usable() -> None:
    at = upload(open_page("predict"), "broken.png", _png()[:60])
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    assert not at.exception
    at.file_uploader[0].clear()
    at = upload(at.run(), "scan.png", _png(2))
    assert not at.error
    assert any("choose the modality" in w.value for w in at.warning)  # no router, no tag
    at.selectbox(key="predict-modality").set_value("mri").run()
    assert any(b.label == "Predict" for b in at.button)


def test_dicom_prefills_modality() -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.Modality = "CR"  # suggests xray; without the tag the page would pre-select mri
    buf = io.BytesIO()
    ds.save_as(buf)
    at = upload(open_page("predict"), "IM0001", buf.getvalue())  # PACS exports: no extension
    assert not at.exception and not at.error
    assert next(s for s in at.selectbox if s.label == "Modality").value == "automatic"
    assert any("**Modality: X-ray**, from the DICOM header" in m.value for m in at.markdown)
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in ("normal", "pneumonia")  # the xray model's classes


def test_missing_model_disables_only_that_modality() -> None:
    at = upload(open_page("predict"), "scan.png", _png())
    at.selectbox(key="predict-modality").set_value("histology").run()
    assert len(at.error) == 1 and "no model is installed" in at.error[0].value
    at.selectbox(key="predict-modality").set_value("mri").run()
    assert not at.error


def test_compare_runs_every_method_and_scores_a_mask() -> None:
    at = upload(open_page("compare"), "scan.png", _png(3))
    at.selectbox(key="compare-modality").set_value("mri").run()
    mask = np.zeros((96, 96), dtype=np.uint8)
    mask[20:60, 30:70] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, "PNG")
    at = upload(at, "mask.png", buf.getvalue(), index=1)
    button(at, "Run all methods").click().run()
    assert not at.exception and not at.error
    explanation = at.session_state["compare"][1]
    assert {"gradcam", "haycam_plus", "dt_gradcam", "scorecam_fast", "gradcam_fused"} <= set(
        explanation.maps)
    scores = at.dataframe[-1].value
    assert len(scores) == len(explanation.maps)
    assert ((scores["iou"] >= 0) & (scores["iou"] <= 1)).all()


def test_models_page_renders_every_card(weights_env: Path) -> None:
    at = open_page("models")
    assert not at.exception
    titles = [e.label for e in at.expander]
    assert any("tiny-mri-resnet18" in t for t in titles)
    assert any("tiny-xray-resnet18" in t for t in titles)


def test_navigation_reaches_every_page() -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    for page in PAGES.values():
        at.switch_page(f"pages/{page}").run()
        assert not at.exception, page
