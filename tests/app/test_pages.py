"""Every page driven through Streamlit's AppTest, on a tiny registered model."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.app.session import PAGES, REPO, button, open_page, panel_titles, upload, viewer_figure
from tests.conftest import register_tiny_model


@pytest.fixture(autouse=True)
def weights_env(monkeypatch: pytest.MonkeyPatch, tiny_registry: Path) -> Path:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tiny_registry))
    return tiny_registry


def _png(seed: int = 0, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG",
                                                                                compress_level=1)
    return buf.getvalue()


def _predicted(data: bytes, modality: str = "mri") -> AppTest:
    at = upload(open_page("predict"), "scan.png", data)
    at.selectbox(key="predict-modality").set_value(modality).run()
    return button(at, "Predict").click().run()


def test_predict_shows_label_probabilities_and_default_maps() -> None:
    at = _predicted(_png())
    assert not at.exception and not at.error
    metric = at.metric[0]
    assert metric.label.startswith("Prediction")
    assert metric.value in ("glioma", "meningioma", "notumor", "pituitary")
    titles = panel_titles(at)
    assert titles[0] == "Uploaded, 96 x 96 px"
    for method in ("Grad-CAM", "HiResCAM", "HayCAM+"):
        assert any(t.startswith(f"{method} - ") for t in titles), titles
    labels = {b.label for b in at.get("download_button")}
    assert labels == {"Overlays (PNG)", "Report (HTML)", "Report (PDF)"}


def test_predict_says_how_good_the_model_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "xray", metrics={
        "accuracy": 0.9, "balanced_accuracy": 0.9, "n": 50,
        "probe": {"accuracy": 0.89, "balanced_accuracy": 0.89, "n": 50}})
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tmp_path))
    at = _predicted(_png(), "xray")
    assert not at.exception and not at.error
    line = next(c.value for c in at.caption if c.value.startswith("Model "))
    assert "tiny-xray-resnet18" in line and "Test accuracy 90.0% (95% CI" in line
    assert "n=50" in line and "linear-probe baseline 89.0% (rule not met" in line


def test_display_controls_reuse_the_maps_and_methods_need_no_second_click() -> None:
    at = _predicted(_png(1), "xray")
    cache = at.session_state["map-cache"]
    assert cache.passes == 1
    before = viewer_figure(at)["data"][1]["source"]
    at.selectbox(key="predict-cmap-gradcam").set_value("cividis").run()
    at.slider(key="predict-alpha-gradcam").set_value(0.8).run()
    next(s for s in at.selectbox if s.label == "Colour map, every view").set_value("inferno").run()
    at.radio(key="predict-view").set_value("what the model sees").run()
    assert not at.exception and cache.passes == 1  # re-rendered, not recomputed
    assert at.selectbox(key="predict-cmap-hirescam").value == "inferno"  # copied to each view
    at.radio(key="predict-view").set_value("original image").run()
    assert viewer_figure(at)["data"][1]["source"] != before
    next(m for m in at.multiselect if m.label == "Methods").set_value(["eigencam"]).run()
    assert cache.passes == 2 and not at.exception  # the new method, without a second click
    assert [t.split(" - ")[0] for t in panel_titles(at)[1:]] == ["Eigen-CAM"]


def test_display_settings_survive_replacing_the_upload() -> None:
    """Replacing the file passes through a run with no file, which stops the page before its
    controls; the colour maps, opacities and methods chosen stay."""
    at = _predicted(_png(7))
    at.selectbox(key="predict-cmap").set_value("viridis").run()
    at.slider(key="predict-alpha-hirescam").set_value(0.9).run()
    at.multiselect(key="predict-methods").set_value(["gradcam", "hirescam"]).run()
    at.file_uploader[0].clear()
    at.run()
    assert not at.selectbox  # the page stopped before its controls
    at = upload(at, "next.png", _png(8))
    button(at, "Predict").click().run()
    assert at.selectbox(key="predict-cmap-gradcam").value == "viridis"
    assert at.slider(key="predict-alpha-hirescam").value == 0.9
    assert at.multiselect(key="predict-methods").value == ["gradcam", "hirescam"]


def test_a_2000_pixel_upload_keeps_its_resolution() -> None:
    """Axes span the uploaded 2000 px; only the pictures sent to the browser are capped."""
    at = _predicted(_png(4, size=2000))
    assert not at.exception and not at.error
    for side, expected in (("1024 px (fast)", 1024), ("full resolution", 2000)):
        at.selectbox(key="predict-side").set_value(side).run()
        figure = viewer_figure(at)
        assert figure["layout"]["xaxis"]["range"] == [-0.5, 1999.5]
        images = [t for t in figure["data"] if t["type"] == "image"]
        assert len(images) == 4
        for trace in images:
            width = Image.open(io.BytesIO(base64.b64decode(trace["source"].split(",")[1]))).width
            assert width == expected and trace["dx"] * width == 2000


def test_every_class_in_one_click_with_probabilities() -> None:
    at = upload(open_page("predict"), "scan.png", _png(5))
    at.selectbox(key="predict-modality").set_value("mri").run()
    next(s for s in at.selectbox if s.label == "Explain class").set_value(
        "every class (one row each)").run()
    button(at, "Predict").click().run()
    assert not at.exception
    prediction = at.session_state["predict"][1]
    titles = panel_titles(at)
    for name, p in prediction.probabilities.items():
        assert f"{name} {p:.1%} - Grad-CAM" in titles
    assert len(titles) == 1 + 4 * 3
    assert at.session_state["map-cache"].passes == 1  # every class in one batched pass


def test_reports_are_built_only_when_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import xai.report

    built = []
    for name in ("build_report_content", "report_html", "report_pdf", "png_bytes"):
        real = getattr(xai.report, name)
        monkeypatch.setattr(xai.report, name,
                            lambda *a, _real=real, _name=name, **k: built.append(_name)
                            or _real(*a, **k))
    at = _predicted(_png(6))
    next(s for s in at.slider if s.label == "Opacity, every view").set_value(0.7).run()
    assert not at.exception and built == []
    deferred = [b.proto for b in at.get("download_button")]
    assert len(deferred) == 3 and all(b.deferred_file_id for b in deferred)


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
    assert any("**Modality: X-ray**, task: **chest X-ray for pneumonia**, from the DICOM header"
               in m.value for m in at.markdown)
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in ("normal", "pneumonia")  # the xray model's classes


def test_missing_model_disables_only_that_modality() -> None:
    at = upload(open_page("predict"), "scan.png", _png())
    at.selectbox(key="predict-modality").set_value("histology").run()
    assert len(at.error) == 1 and "no model is installed" in at.error[0].value
    at.selectbox(key="predict-modality").set_value("mri").run()
    assert not at.error


def test_compare_runs_every_method_and_ranks_them_against_a_mask() -> None:
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
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert len(captions) == len(explanation.maps)
    assert all(" map" in c and "upsampled to 64 x 64" in c for c in captions), captions
    assert not any("scorecam" in c or "gradcampp" in c for c in captions)
    scores = at.dataframe[-1].value
    assert list(scores.columns) == ["rank", "method", "IoU", "Dice", "pointing game",
                                    "energy share"]
    assert len(scores) == len(explanation.maps) + 2
    assert list(scores["method"][-2:]) == ["(whole frame)", "(ideal 2 x 2 map)"]
    assert set(scores["rank"][:-2]) != {"1"} and "" not in set(scores["rank"][:-2])
    assert ((scores["IoU"] >= 0) & (scores["IoU"] <= 1)).all()
    button(at, "Compute deletion / insertion curves (about a second per method)").click().run()
    assert not at.exception
    faith = at.dataframe[-1].value
    assert list(faith["method"]) == [cam.label for cam in explanation.maps.values()]
    assert {"deletion AUC", "insertion AUC", "insertion - deletion"} <= set(faith.columns)
    assert len(at.get("plotly_chart")) == 2
    at.run()  # a rerun shows the stored curves without recomputing them
    assert len(at.get("plotly_chart")) == 2 and not at.exception


def test_models_page_renders_every_card(weights_env: Path) -> None:
    at = open_page("models")
    assert not at.exception
    titles = [e.label for e in at.expander]
    assert any("tiny-mri-resnet18" in t for t in titles)
    assert any("tiny-xray-resnet18" in t for t in titles)


def test_models_page_speaks_plain_words(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "xray", metrics={
        "accuracy": 0.9, "n": 50, "iba": 0.8, "gmean": 0.88, "ece": 0.02,
        "per_class": {"normal": {"sensitivity": 0.9, "specificity": 0.8, "support": 25},
                      "pneumonia": {"sensitivity": 0.8, "specificity": 0.9, "support": 25}}},
        split={"method": "stratified ratio split", "ratios": [8, 1, 1], "seed": 0},
        recipe={"name": "default", "regime": "finetune", "epochs": 5, "rotation": 10,
                "command": "python -m training.train --epochs 5"})
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tmp_path))
    at = open_page("models")
    assert not at.exception and not at.get("json")  # no raw JSON
    text = " ".join(m.value for m in at.markdown)
    for heading in ("**Training data**", "**Split**", "**How it was trained**"):
        assert heading in text
    assert "Stratified ratio split 8:1:1" in text and "rotation up to 10 degrees" in text
    metrics = at.table[0].value
    assert list(metrics.columns) == ["metric", "value", "meaning"]
    assert "Index of balanced accuracy (IBA)" in set(metrics["metric"])
    assert "iba" not in set(metrics["metric"]) and "gmean" not in set(metrics["metric"])
    assert list(at.dataframe[0].value["class"]) == ["normal", "pneumonia"]
    assert at.code[0].value == "python -m training.train --epochs 5"


def test_navigation_reaches_every_page() -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    for page in PAGES.values():
        at.switch_page(f"pages/{page}").run()
        assert not at.exception, page
