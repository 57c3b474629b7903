"""Batch inputs: listing in a fixed order, decoding in workers' shape, errors as entries."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from imaging import load_path
from models.batch.sources import (
    VIDEO_CHUNK,
    InputError,
    Task,
    ViewSpec,
    decode_task,
    load_original,
    open_source,
)
from tests.batch.inputs import BROKEN, capsule_frames, read_clip, write_clip

SPEC = ViewSpec(("resize", 32), {"endoscopy": (("resize", 48),), "mri": (("brain_mri", 40),)})


def _decode_all(source) -> list:
    return [d for task in source.tasks() for d in decode_task(task, SPEC)]


def test_folder_is_listed_recursively_in_a_fixed_order_without_hidden_files(study: Path) -> None:
    source = open_source(study, exclude=study / "capsule")
    names = [task.name for task in source.tasks()]
    assert names == [*sorted(BROKEN), "frame00.jpg", "frame02.jpg", "frame04.jpg", "mri.jpg",
                     "xray.jpg"]
    assert [task.index for task in source.tasks()] == list(range(len(names)))
    assert source.expected_images() == len(names)
    everything = [task.name for task in open_source(study).tasks()]
    assert "capsule/frame01.jpg" in everything and ".DS_Store" not in everything


def test_broken_files_become_error_entries_and_images_get_the_views_they_need(study: Path) -> None:
    decoded = {d.file: d for d in _decode_all(open_source(study))}
    for name, words in BROKEN.items():
        assert words in decoded[name].error and not decoded[name].views, name
    frame = decoded["frame00.jpg"]
    assert frame.error is None and frame.meta["width"] == 256
    # No tag and no requested modality: the router's view and every diagnosis model's view.
    assert {k: v.shape for k, v in frame.views.items()} == {
        ("resize", 32): (32, 32, 3), ("resize", 48): (48, 48, 3), ("brain_mri", 40): (40, 40, 3)}
    insisted = ViewSpec(SPEC.router, SPEC.modalities, requested="endoscopy")
    task = next(t for t in open_source(study).tasks() if t.name == "frame00.jpg")
    assert set(decode_task(task, insisted)[0].views) == {("resize", 32), ("resize", 48)}


def test_csv_paths_are_relative_to_the_csv_and_bad_rows_are_errors(study: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    with open(listing, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "Path"])
        writer.writerows([["a", study / "frame00.jpg"], ["b", ""], ["c", "missing.jpg"]])
    (tmp_path / "local.jpg").write_bytes((study / "mri.jpg").read_bytes())
    with open(listing, "a", newline="") as handle:
        csv.writer(handle).writerow(["d", "local.jpg"])
    decoded = _decode_all(open_source(listing))
    assert [d.file for d in decoded] == [str(study / "frame00.jpg"), "list.csv line 3",
                                         "missing.jpg", "local.jpg"]
    assert [d.error is None for d in decoded] == [True, False, False, True]
    assert "does not exist" in decoded[2].error
    (tmp_path / "bad.csv").write_text("id,label\n1,x\n")
    with pytest.raises(InputError, match="'path'"):
        open_source(tmp_path / "bad.csv")


def test_zip_members_decode_like_the_files_and_a_bomb_is_refused(study: Path, tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for task in open_source(study).tasks():
            zipped.write(task.path, task.name)
        zipped.writestr("__MACOSX/._frame00.jpg", b"junk")
        zipped.writestr("zeros.png", b"\x00" * (65 * 2**20))
    from_zip = {d.file: d for d in _decode_all(open_source(archive))}
    from_folder = {d.file: d for d in _decode_all(open_source(study))}
    assert set(from_zip) == set(from_folder) | {"zeros.png"}
    for name, decoded in from_folder.items():
        assert (decoded.error is None) == (from_zip[name].error is None), name
        for view, pixels in decoded.views.items():
            np.testing.assert_array_equal(from_zip[name].views[view], pixels)
    assert "too large" in from_zip["zeros.png"].error


def test_video_chunks_seek_to_the_same_frames_as_reading_straight_through(
        shared_data: Path, tmp_path: Path) -> None:
    frames = capsule_frames(shared_data, 2 * VIDEO_CHUNK + 6)
    clip = write_clip(tmp_path / "clip.mp4", frames)
    straight = read_clip(clip)
    assert len(straight) == len(frames)
    source = open_source(clip)
    tasks = list(source.tasks())
    assert [t.video for t in tasks] == [(0, 32, 1), (32, 64, 1), (64, None, 1)]
    decoded = [d for t in tasks for d in decode_task(t, SPEC)]
    assert [d.file for d in decoded] == [f"clip.mp4#{i}" for i in range(len(frames))]
    for index in (0, 31, 32, 63, 64, len(frames) - 1):
        task = tasks[min(index // VIDEO_CHUNK, 2)]
        np.testing.assert_array_equal(load_original(task, index).rgb, straight[index])
    every = open_source(clip, every=3)
    assert every.expected_images() == 24
    files = [d.file for t in every.tasks() for d in decode_task(t, SPEC)]
    assert files == [f"clip.mp4#{i}" for i in range(0, len(frames), 3)]


def test_videos_inside_a_folder_or_a_csv_give_a_row_per_frame(shared_data: Path,
                                                                 tmp_path: Path) -> None:
    frames = capsule_frames(shared_data, VIDEO_CHUNK + 4)
    study = tmp_path / "study"
    (study / "day1").mkdir(parents=True)
    write_clip(study / "day1" / "clip.mp4", frames)
    (study / "day1" / "still.jpg").write_bytes(frames[0].read_bytes())
    (study / "broken.avi").write_text("not a video")
    source = open_source(study, every=2)
    assert source.expected_images() == 1 + len(range(0, len(frames), 2)) + 1
    decoded = _decode_all(source)
    assert [d.file for d in decoded] == ["broken.avi", *(f"day1/clip.mp4#{i}" for i in
                                         range(0, len(frames), 2)), "day1/still.jpg"]
    assert "video cannot be read" in decoded[0].error
    assert all(d.error is None and d.meta["frame"] is not None for d in decoded[1:-1])
    listing = tmp_path / "list.csv"
    listing.write_text("path\nstudy/day1/clip.mp4\n")
    assert len(_decode_all(open_source(listing))) == len(frames)


def test_dicom_frames_give_a_row_each_or_the_middle_one(shared_data: Path) -> None:
    path = shared_data / "dicom" / "emri_small.dcm"
    task = Task(0, "emri_small.dcm", str(path))
    every = decode_task(task, SPEC)
    assert [d.file for d in every] == [f"emri_small.dcm#{i}" for i in range(10)]
    assert [d.meta["frame"] for d in every] == list(range(10))
    assert all(d.tagged == "mri" and d.meta["dicom_modality"] == "MR" for d in every)
    assert set(every[0].views) == {("resize", 32), ("brain_mri", 40)}  # the tag decides
    middle = decode_task(task, ViewSpec(SPEC.router, SPEC.modalities, all_frames=False))
    assert [(d.file, d.meta["frame"]) for d in middle] == [("emri_small.dcm", 5)]
    np.testing.assert_array_equal(load_original(task, 5).rgb, load_path(path).rgb)


def test_uploads_held_in_memory_decode_like_files(study: Path) -> None:
    names = ["frame00.jpg", "broken/empty.png"]
    source = open_source([(name, (study / name).read_bytes()) for name in names])
    assert source.kind == "uploads" and source.expected_images() == 2
    decoded = _decode_all(source)
    assert [d.file for d in decoded] == names and decoded[1].error
    from_file = decode_task(Task(0, "frame00.jpg", str(study / "frame00.jpg")), SPEC)[0]
    for view, pixels in from_file.views.items():
        np.testing.assert_array_equal(decoded[0].views[view], pixels)


def test_inputs_that_cannot_be_read_at_all_are_refused(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_text("not a video")
    for location, words in ((tmp_path / "absent", "does not exist"),
                            (tmp_path / "clip.mp4", "cannot be read")):
        with pytest.raises(InputError, match=words):
            open_source(location)
    with pytest.raises(InputError, match="--every"):
        open_source(tmp_path, every=0)
