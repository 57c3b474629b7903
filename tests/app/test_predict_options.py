"""Predict and Compare offer what the registries say: the method list, stage maps and grids,
the card's best localiser first, a case note on the report, Kvasir-SEG masks as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaging import load_path
from models.zoo import get_arch
from tests.app.session import button, deferred_downloads, open_page, upload
from tests.conftest import register_tiny_colonoscopy, register_tiny_model
from tests.imaging.builders import noise_jpeg, noise_png
from xai import method_label
from xai.engine import stage_methods
from xai.registry import method_names

BEST = "layercam"  # not among the page's defaults, so preselecting it shows


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MRI model whose card names its best localiser, and a colonoscopy model."""
    root = tmp_path_factory.mktemp("options-weights")
    register_tiny_model(root, "mri", metrics={"localization": {"best": {"method": BEST}}})
    register_tiny_colonoscopy(root)
    return root


@pytest.fixture(autouse=True)
def weights_env(monkeypatch: pytest.MonkeyPatch, registry: Path) -> Path:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(registry))
    return registry


def _predicted(data: bytes, modality: str = "mri"):
    at = upload(open_page("predict"), "scan.png", data)
    at.selectbox(key="predict-modality").set_value(modality).run()
    return button(at, "Predict").click().run()


def test_methods_stage_maps_and_grids_come_from_the_registries() -> None:
    at = _predicted(noise_png())
    assert not at.exception and not at.error
    methods = at.multiselect(key="predict-methods")
    assert methods.options == [method_label(m) for m in method_names(
        include_expensive=False, include_variants=False)]
    assert methods.value[0] == BEST  # the card's best localiser, preselected first
    stages = stage_methods(get_arch("resnet18").stage_layers)
    stage_box = at.checkbox(key="predict-stages")
    assert stage_box.label == f"Add per-stage maps ({', '.join(map(method_label, stages))})"
    stage_box.check().run()
    assert not at.exception
    grids = [c.value for c in at.caption if " map" in c.value and "upsampled to 64 x 64" in c.value]
    assert len(grids) == len(methods.value) + len(stages)  # one per viewer column
    assert any(g.startswith("mean of ") for g in grids)  # the fused map names its grids


def test_the_case_note_reaches_the_report_cleaned_and_stays_with_its_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    downloads = deferred_downloads(monkeypatch)
    at = _predicted(noise_png())
    at.text_area(key="predict-case-note").input("Lesion grew since March; MRN 12345678").run()
    html = downloads["medxai-report.html"]()
    assert "Lesion grew since March" in html and "[number removed]" in html
    assert "12345678" not in html
    assert b"%PDF" in downloads["medxai-report.pdf"]()[:8]
    upload(at, "other.jpg", noise_jpeg())  # another image: the note is gone
    at = button(at, "Predict").click().run()
    assert at.text_area(key="predict-case-note").value == ""


def test_compare_scores_a_kvasir_seg_frame_with_its_mask(shared_data: Path) -> None:
    frame = sorted((shared_data / "kvasir-seg" / "images").glob("*.jpg"))[0]
    mask = shared_data / "kvasir-seg" / "masks" / f"{frame.stem}.png"
    at = upload(open_page("compare"), frame.name, frame.read_bytes())
    at.selectbox(key="compare-task").set_value("colonoscopy-polyp").run()
    assert "task: **colonoscopy for polyps**" in " ".join(m.value for m in at.markdown)
    at = upload(at, mask.name, mask.read_bytes(), index=1)
    button(at, "Run all methods").click().run()
    assert not at.exception and not at.error
    assert not any("crops the image" in w.value for w in at.warning)  # mask_frame keeps it whole
    scores = at.dataframe[-1].value
    assert list(scores["method"][-2:-1]) == ["(whole frame)"]
    polyp = load_path(mask).rgb.max(axis=2) > 127
    whole = scores.set_index("method").loc["(whole frame)"]
    assert whole["IoU"] == pytest.approx(polyp.mean(), abs=1e-3)  # the polyp's share of the frame
    assert ((scores["IoU"] >= 0) & (scores["IoU"] <= 1)).all()
    assert scores["IoU"][:-2].max() > 0


def test_compare_shows_the_card_s_best_localiser_first() -> None:
    at = upload(open_page("compare"), "scan.png", noise_png())
    at.selectbox(key="compare-modality").set_value("mri").run()
    button(at, "Run all methods").click().run()
    captions = [img.proto.imgs[0].caption for img in at.get("image")]
    assert captions[0].startswith(f"{method_label(BEST)} (best on the test masks) - ")
    assert any(f"First: {method_label(BEST)}" in c.value for c in at.caption)


def test_models_page_names_the_task_and_explains_mask_frame() -> None:
    at = open_page("models")
    assert not at.exception
    titles = [e.label for e in at.expander]
    assert any(t.startswith("colonoscopy for polyps: colonoscopy-tiny") for t in titles)
    text = " ".join(m.value for m in at.markdown)
    assert "Task: **colonoscopy for polyps** (`colonoscopy-polyp`)" in text
    assert "blacked out" in text and "burned-in text" in text
    assert "Task: **brain MRI for tumours** (`brain-tumour`)" in text
