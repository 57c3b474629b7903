"""A worklist: every file routed and predicted as one upload would be, problems per row, CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from imaging import load_image
from imaging.archive import NamedFile
from models.predict import predict
from models.registry import LoadedModel, ModelUnavailable, load_for_modality
from models.route import load_router
from models.worklist import COLUMNS, read_worklist, to_csv
from tests.conftest import register_biased_router, register_tiny_colonoscopy, register_tiny_model
from tests.imaging.builders import dicom_bytes, noise_jpeg, noise_png


@pytest.fixture(scope="module")
def model_for(tiny_registry: Path):
    models: dict[tuple[str, str | None], LoadedModel] = {}

    def load(modality: str, task: str | None = None) -> LoadedModel:
        if (modality, task) not in models:
            models[modality, task] = load_for_modality(modality, tiny_registry, device="cpu",
                                                       task=task)
        return models[modality, task]

    return load


def _files() -> list[NamedFile]:
    def to_cr(ds) -> None:
        ds.Modality = "CR"

    return [NamedFile("a.png", noise_png()), NamedFile("=cmd|' /C calc'!A0.png", noise_jpeg()),
            NamedFile("broken.png", noise_png()[:80]),
            NamedFile("chest.dcm", dicom_bytes("MR_small.dcm", to_cr))]


def test_every_file_gets_what_one_upload_would(model_for) -> None:
    files = _files()
    items = list(read_worklist(files, None, model_for, modality="mri"))
    assert [i.name for i in items] == [f.name for f in files]  # upload order
    for file, item in zip(files, items, strict=True):
        if item.problem:
            continue
        alone = predict(model_for("mri"), load_image(file.data).rgb)
        assert item.prediction.probabilities == pytest.approx(alone.probabilities, abs=1e-6)
        assert item.routing.modality == "mri" and item.routing.source == "user"
    assert items[2].problem.startswith("broken.png: ") and items[2].prediction is None
    assert items[3].routing.source == "user"  # the choice beats the CR tag


def test_automatic_routing_without_a_router(model_for) -> None:
    items = list(read_worklist(_files(), None, model_for))
    assert items[3].routing.modality == "xray" and items[3].routing.source == "dicom"
    assert items[3].prediction.label in ("normal", "pneumonia")
    assert items[0].problem == "modality unknown: choose one to read this file"


def test_a_missing_model_is_that_row_s_problem(model_for) -> None:
    def only_mri(modality: str, task: str | None) -> LoadedModel:  # no X-ray model
        if modality != "mri":
            raise ModelUnavailable(modality, f"no model is installed for {modality}")
        return model_for(modality, task)

    automatic = list(read_worklist(_files(), None, only_mri))
    assert automatic[3].problem.endswith("no model is installed for xray")
    forced = list(read_worklist(_files()[:1], None, only_mri, modality="mri"))
    assert forced[0].problem is None and forced[0].prediction is not None


def test_csv_has_base_names_results_and_no_formulas(model_for) -> None:
    items = list(read_worklist(_files(), None, model_for, modality="mri", threads=1))
    rows = list(csv.DictReader(io.StringIO(to_csv(items))))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 4
    assert [r["file"] for r in rows] == ["a.png", "'=cmd|' /C calc'!A0.png", "broken.png",
                                         "chest.dcm"]
    assert rows[0]["label"] == items[0].prediction.label
    assert float(rows[0]["confidence"]) == pytest.approx(items[0].prediction.confidence, abs=1e-4)
    assert rows[2]["label"] == "" and rows[2]["problem"].startswith("broken.png")
    assert [r["warnings"] for r in rows] == [" ".join(i.warnings) for i in items]


def test_rows_are_read_by_the_model_of_their_routed_task(tmp_path: Path) -> None:
    """The router names colonoscopy: the row gets the colonoscopy model, not the capsule one."""
    register_tiny_model(tmp_path, "endoscopy", name="capsule-tiny", classes=["bleeding", "normal"])
    register_tiny_colonoscopy(tmp_path)
    router = load_router(register_biased_router(tmp_path, "colonoscopy-polyp").parent)
    asked: list[tuple[str, str | None]] = []

    def model_for(modality: str, task: str | None) -> LoadedModel:
        asked.append((modality, task))
        return load_for_modality(modality, tmp_path, device="cpu", task=task)

    item, = read_worklist([NamedFile("frame.png", noise_png())], router, model_for)
    assert asked == [("endoscopy", "colonoscopy-polyp")]
    assert item.task == "colonoscopy-polyp" and set(item.prediction.probabilities) == {
        "non-polyp", "polyp"}
    assert item.row()["task"] == "colonoscopy-polyp"
