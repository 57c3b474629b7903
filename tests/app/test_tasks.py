"""The pages read an upload with the model of its task (AppTest, a tiny registry with a capsule
model, a colonoscopy model and a router that reads every image as a colonoscopy frame)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.session import button, open_page, upload
from tests.conftest import register_biased_router, register_tiny_colonoscopy, register_tiny_model
from tests.imaging.builders import noise_png

CAPSULE_CLASSES = ["bleeding", "non-bleeding"]


@pytest.fixture(scope="module")
def task_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("task-weights")
    register_tiny_model(root, "endoscopy", name="capsule-tiny", classes=CAPSULE_CLASSES)
    register_tiny_colonoscopy(root)
    register_biased_router(root, "colonoscopy-polyp")
    return root


@pytest.fixture(autouse=True)
def weights_env(monkeypatch: pytest.MonkeyPatch, task_registry: Path) -> Path:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(task_registry))
    return task_registry


def _summary(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Modality:"))


def test_a_frame_routed_to_colonoscopy_gets_the_colonoscopy_model() -> None:
    at = upload(open_page("predict"), "frame.png", noise_png())
    assert "**Modality: endoscopy**" in _summary(at)
    assert "task: **colonoscopy for polyps**, detected" in _summary(at)
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in ("non-polyp", "polyp")
    assert "(mask_frame)" in " ".join(c.value for c in at.caption)  # the model's own view


def test_the_user_s_task_wins_over_the_router() -> None:
    at = upload(open_page("predict"), "frame.png", noise_png())
    task = at.selectbox(key="predict-task")
    assert task.options[0] == "automatic" and "capsule endoscopy for bleeding" in task.options
    task.set_value("capsule-bleeding").run()
    assert "task: **capsule endoscopy for bleeding**, your choice" in _summary(at)
    button(at, "Predict").click().run()
    assert not at.exception and at.metric[0].value in CAPSULE_CLASSES


def test_the_task_box_offers_the_chosen_modality_s_tasks() -> None:
    at = upload(open_page("predict"), "frame.png", noise_png())
    at.selectbox(key="predict-modality").set_value("mri").run()
    assert at.selectbox(key="predict-task").options == ["automatic", "brain MRI for tumours"]
    assert "task: **brain MRI for tumours**" in _summary(at)
    assert any("no model is installed" in e.value for e in at.error)


def test_worklist_rows_use_the_routed_task() -> None:
    at = open_page("worklist")
    at.file_uploader[0].upload("frame.png", noise_png(), "image/png")
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["task"]) == ["colonoscopy-polyp"]
    assert table["label"][0] in ("non-polyp", "polyp")
