"""Batch runs through the Python API: every input becomes a row, the same rows whatever the
container, ranked maps drawn on the originals, DICOM without identifiers, resumable settings."""

from __future__ import annotations

import csv
import html
import multiprocessing
import os
import shutil
import signal
import sys
import time
import types
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from models.batch import (
    BatchOptions,
    RunConflict,
    iter_results,
    open_source,
    run_batch,
    run_in_memory,
)
from models.batch.pipeline import decode_stream, format_value
from models.batch.sources import Task, ViewSpec
from models.card import ModelCard
from models.card_text import headline_text
from models.predict import predict
from models.registry import load_for_modality
from tests.batch.inputs import BROKEN, REPO, capsule_frames, read_clip, write_clip
from xai.report import DISCLAIMER

QUICK = BatchOptions(batch_size=4, workers=1)
APP_TAGS = ("MR", "CR", "DX")  # DICOM Modality codes of the app's modalities in the staged files


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _text(rows) -> list[dict[str, str]]:
    return [{k: format_value(v) for k, v in row.items()} for row in rows]


@pytest.fixture(scope="module")
def study_run(study: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("study-run")
    report = run_batch(study, out, QUICK, rank_by="bleeding", explain_top=2)
    return report, out


def test_a_folder_gives_one_row_per_file_with_error_rows_ranked_by_the_class(study_run) -> None:
    report, out = study_run
    rows = _csv(out / "results.csv")
    files = [row["file"] for row in rows]
    assert sorted(files) == sorted([*(f"frame{i:02d}.jpg" for i in (0, 2, 4)),
                                    *(f"capsule/frame{i:02d}.jpg" for i in (1, 3, 5)),
                                    "mri.jpg", "xray.jpg", *BROKEN])
    assert report.images == len(rows) == 11 and report.errors == len(BROKEN)
    for name, words in BROKEN.items():
        row = next(r for r in rows if r["file"] == name)
        assert words in row["error"] and row["label"] == "" and row["p_bleeding"] == ""
    # Rows without p(bleeding) come last, in input order.
    assert [r["file"] for r in rows[6:]] == [*sorted(BROKEN), "mri.jpg", "xray.jpg"]
    by_file = {r["file"]: r for r in rows}
    assert (by_file["mri.jpg"]["modality"], by_file["xray.jpg"]["modality"]) == ("mri", "xray")
    capsule = rows[:6]
    assert {r["modality"] for r in capsule} == {"endoscopy"}
    assert {r["modality_source"] for r in capsule} == {"router"}
    bleeding = [float(r["p_bleeding"]) for r in capsule]
    assert bleeding == sorted(bleeding, reverse=True)
    assert {r["file"] for r in capsule[:3]} == {"frame00.jpg", "frame02.jpg", "frame04.jpg"}
    for row in capsule:
        total = float(row["p_bleeding"]) + float(row["p_non-bleeding"])
        assert total == pytest.approx(1.0, abs=1e-5) and row["in_distribution"] in ("true", "false")
        assert row["uncertain"] in ("true", "false") and row["p_glioma"] == ""


def test_the_stream_gives_the_rows_the_csv_holds(study: Path, study_run) -> None:
    _, out = study_run
    written = {r["file"]: r for r in _csv(out / "results.csv")}
    streamed = _text(iter_results(study, QUICK))
    assert [r["file"] for r in streamed] == [t.name for t in open_source(study).tasks()]
    for row in streamed:
        assert row == written[row["file"]]


def test_maps_are_drawn_on_the_original_images_and_the_summary_reads_offline(study_run) -> None:
    report, out = study_run
    assert sorted(p.name for p in report.maps) == sorted(
        f"rank000{r}_{m}.png" for r in (1, 2) for m in ("gradcam", "hirescam", "haycam_plus"))
    for path in report.maps:
        assert cv2.imread(str(path)).shape == (256, 256, 3)  # the original's size, not the view's
    page = (out / "summary.html").read_text()
    assert DISCLAIMER in page and "maps/rank0001_gradcam.png" in page
    assert page.count("data:image/png;base64,") == 1 + 2 * 4  # histogram; originals and maps
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "truncated" in page  # error rows are listed, not hidden
    read = {r["model"] for r in _csv(out / "results.csv") if r["model"]}
    assert len(read) >= 2  # capsule and X-ray (or MRI) models: each with its figures
    for name in read:
        card = ModelCard.read(REPO / "weights" / name)
        assert f"<td>{html.escape(headline_text(card))}</td>" in page


def test_uploads_in_memory_give_the_folder_runs_csv_and_maps_without_touching_disk(
        study: Path, study_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, out = study_run
    names = [task.name for task in open_source(study).tasks()]
    uploads = [(name, (study / name).read_bytes()) for name in names]
    monkeypatch.chdir(tmp_path)
    run = run_in_memory(uploads, QUICK, rank_by="bleeding", explain_top=2)
    assert run.results_csv == (out / "results.csv").read_text()
    assert [r["file"] for r in run.rows] == [r["file"] for r in _csv(out / "results.csv")]
    assert not list(tmp_path.iterdir())
    page = run.summary_html
    assert DISCLAIMER in page and "2 uploaded files" not in page and "11 uploaded files" in page
    assert page.count("data:image/png;base64,") == 1 + 2 * 4 and "<a href" not in page
    with pytest.raises(ValueError, match="not a class"):
        run_in_memory(uploads, QUICK, rank_by="no-such-class")


def test_csv_zip_and_uploads_give_the_rows_of_the_folder(study: Path, tmp_path: Path) -> None:
    options = BatchOptions(batch_size=4, workers=0, views=False)
    folder = _text(iter_results(study, options))
    names = [row["file"] for row in folder]
    listing = tmp_path / "list.csv"
    listing.write_text("path\n" + "".join(f"{study.name}/{n}\n" for n in names))
    shutil.copytree(study, tmp_path / study.name)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in names:
            zipped.write(study / name, name)
    uploads = [(name, (study / name).read_bytes()) for name in names]
    for location, prefix in ((listing, f"{study.name}/"), (archive, ""), (uploads, "")):
        rows = _text(iter_results(location, options))
        assert [{**r, "file": r["file"].removeprefix(prefix)} for r in rows] == folder


def test_video_rows_are_frames_predicted_as_the_frames_themselves(shared_data: Path,
                                                                  tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", capsule_frames(shared_data, 10))
    options = BatchOptions(modality="endoscopy", router=False, batch_size=4, workers=1)
    report = run_batch(clip, tmp_path / "out", options, every=3)
    rows = _csv(report.results)
    assert [r["file"] for r in rows] == ["clip.mp4#0", "clip.mp4#3", "clip.mp4#6", "clip.mp4#9"]
    assert [r["frame"] for r in rows] == ["0", "3", "6", "9"]
    loaded = load_for_modality("endoscopy", device="cpu")
    frames = read_clip(clip)
    for row in rows:
        alone = predict(loaded, frames[int(row["frame"])])
        assert row["label"] == alone.label and row["modality_source"] == "user"
        assert float(row["p_bleeding"]) == pytest.approx(alone.probabilities["bleeding"], abs=2e-6)


def _identifiers(folder: Path) -> set[str]:
    found = set()
    for path in folder.glob("*.dcm"):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001 - the negative test files may not parse
            continue
        for keyword in ("PatientName", "PatientID", "InstitutionName", "ReferringPhysicianName",
                        "AccessionNumber"):
            value = str(header.get(keyword, "") or "").strip()
            if len(value) >= 4:
                found.add(value)
    return found


def test_a_dicom_directory_gives_a_row_per_instance_without_identifiers(shared_data: Path,
                                                                        tmp_path: Path) -> None:
    folder = shared_data / "dicom"
    options = BatchOptions(batch_size=8, workers=1, all_frames=False)
    report = run_batch(folder, tmp_path / "out", options, rank_by="meningioma")
    rows = {r["file"]: r for r in _csv(report.results)}
    assert set(rows) == {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    with open(folder / "SOURCES.csv", newline="") as handle:
        sources = list(csv.DictReader(handle))
    for source in sources:
        row = rows[source["file"]]
        if "EXPECTED FAILURE" in source["pixel_decoder_needed"]:
            assert row["error"], source["file"]
        elif row["error"]:  # a valid image stops only at a missing decoder or a foreign modality
            foreign = "no known modality" in row["error"] and source["Modality"] not in APP_TAGS
            assert foreign or "install" in row["error"], (source["file"], row["error"])
        if source["Modality"] in APP_TAGS and not row["error"]:
            assert row["modality_source"] == "dicom" and row["dicom_modality"] == source["Modality"]
        if source["NumberOfFrames"] not in ("", "1") and not row["error"]:
            assert row["frame"] == str(int(source["NumberOfFrames"]) // 2)
    assert all(rows[name]["error"] for name in rows if not name.endswith(".dcm"))
    identifiers = _identifiers(folder)
    assert any("AVeryGood" in value for value in identifiers)  # the test would catch a leak
    written = report.results.read_text() + report.summary.read_text()
    assert not [value for value in identifiers if value in written]


def test_a_rerun_resumes_and_other_settings_are_refused(study: Path, study_run,
                                                        tmp_path: Path) -> None:
    _, done = study_run
    out = tmp_path / "again"
    shutil.copytree(done, out, ignore=shutil.ignore_patterns("results.csv", "maps", "summary.html"))
    journal = (out / "parts" / "part-0.csv").read_bytes()
    report = run_batch(study, out, QUICK, rank_by="bleeding")  # nothing left to predict
    assert (out / "parts" / "part-0.csv").read_bytes() == journal
    assert report.results.read_text() == (done / "results.csv").read_text()
    with pytest.raises(RunConflict, match="changed: .*every, modality"):
        run_batch(study, out, BatchOptions(modality="endoscopy", batch_size=4, workers=1), every=2)
    fresh = run_batch(study, out, BatchOptions(modality="xray", batch_size=4, workers=1),
                      restart=True)
    assert {r["modality"] for r in _csv(fresh.results)} == {"xray", ""}
    with pytest.raises(ValueError, match="not a class"):
        run_batch(study, out, QUICK, rank_by="no-such-class")


def test_a_killed_decoder_process_is_replaced_and_no_image_is_lost(study: Path,
                                                                    shared_data: Path) -> None:
    spec = ViewSpec(("resize", 32), {})
    slow = Task(0, "RG1_J2KI.dcm", str(shared_data / "dicom" / "RG1_J2KI.dcm"))  # ~1 s to decode
    tasks = [Task(0, "frame00.jpg", str(study / "frame00.jpg")), replace(slow, index=1),
             *(replace(t, index=t.index + 2) for t in open_source(study).tasks())]
    results = []
    for task, decoded in decode_stream(tasks, spec, workers=1, window=4):
        if not results:  # the worker is busy with the DICOM: kill it, let the pool notice
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)
            time.sleep(1.0)
        results.append((task.name, [d.error for d in decoded]))
    assert [name for name, _ in results] == [t.name for t in tasks]
    assert [name for name, errors in results if any(errors)] == sorted(BROKEN)
    (_, inline), = decode_stream(tasks[:1], spec, workers=0, window=1)
    (_, in_worker), = decode_stream(tasks[:1], spec, workers=1, window=1)
    np.testing.assert_array_equal(inline[0].views[("resize", 32)], in_worker[0].views[("resize", 32)])


def test_decoders_do_not_run_the_parents_main_script_again(study: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.py"  # under Streamlit, __main__ is the last page script run
    page.write_text("raise SystemExit('a page script ran in a decoding worker')\n")
    main = types.ModuleType("__main__")
    main.__file__, main.__spec__ = str(page), None
    monkeypatch.setitem(sys.modules, "__main__", main)
    tasks = [t for t in open_source(study).tasks() if t.name == "frame00.jpg"]
    (_, decoded), = decode_stream(tasks, ViewSpec(("resize", 32), {}), workers=1, window=1)
    assert decoded[0].error is None and sys.modules["__main__"] is main


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_decoders_do_not_load_torch(study: Path) -> None:
    """A decoder needs neither torch nor the models: loading them cost each worker ~700 MB."""
    tasks = [t for t in open_source(study).tasks() if t.name.startswith("frame")][:2]
    libraries = []
    for _, decoded in decode_stream(tasks, ViewSpec(("resize", 32), {}), workers=1, window=2):
        assert decoded[0].error is None
        for child in multiprocessing.active_children():
            libraries += Path(f"/proc/{child.pid}/maps").read_text().split()
    assert libraries and not [name for name in libraries if "libtorch" in name]
