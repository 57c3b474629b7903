"""The inputs of a batch run, as numbered tasks that a worker process decodes into model views.

A task is one file (a folder entry, a CSV row, a zip member, an upload held in memory) or a run
of video frames (of a video given alone, in a folder or in a CSV). Decoding a task gives one
:class:`Decoded` image per frame it holds (every frame of a multi-frame DICOM or TIFF, or only
the middle one), each with the model views the run needs, or with the reason it could not be
read. Tasks are numbered in a fixed order, so a resumed or sharded run finds the same task under
the same number. This module imports no torch: the worker processes stay small and start fast.
"""

from __future__ import annotations

import csv
import functools
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from imaging import ImageInputError, Limits, LoadedImage, load_image, load_path, preprocess
from imaging.datatypes import check_shape

__all__ = [
    "VIDEO_CHUNK",
    "VIDEO_SUFFIXES",
    "Decoded",
    "InputError",
    "Source",
    "Task",
    "View",
    "ViewSpec",
    "decode_task",
    "load_original",
    "open_source",
]

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg",
                            ".wmv"})
VIDEO_CHUNK = 32
"""Kept video frames per task: the unit of work, of resumption and of sharding."""
VIDEO_UNREADABLE = "the video cannot be read (damaged, or a codec OpenCV lacks)"
PATH_COLUMNS = ("path", "file")
_LIMITS = Limits()

View = tuple[str, int]
"""(preprocessing, input size) of a model."""


class InputError(ValueError):
    """The batch input as a whole cannot be read (not a single image among many)."""


@dataclass(frozen=True)
class Task:
    """One unit of work. ``name`` is the ``file`` column (before any ``#frame``); the pixels
    come from ``path`` (a file, or the zip holding ``member``), from ``data``, or from the video
    frames ``start, start + every, ...`` before ``stop`` (``None``: to the end) of a video of
    ``frames`` frames. ``error``: the task is known to be unreadable without decoding it."""

    index: int
    name: str
    path: str | None = None
    member: str | None = None
    data: bytes | None = field(default=None, repr=False)
    video: tuple[int, int | None, int] | None = None
    frames: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ViewSpec:
    """Which model views a worker computes: the router's, and the diagnosis models' of the
    requested or DICOM-tagged modality (every modality's when neither is known)."""

    router: View | None
    modalities: dict[str, tuple[View, ...]]
    requested: str | None = None
    all_frames: bool = True

    def needed(self, tagged: str | None) -> list[View]:
        """The views to compute for an image whose DICOM tag suggests ``tagged``."""
        known = self.requested or tagged
        chosen = list(self.modalities.get(known, ())) if known else [
            view for views in self.modalities.values() for view in views]
        return list(dict.fromkeys(([self.router] if self.router else []) + chosen))


@dataclass(frozen=True, eq=False)
class Decoded:
    """One image of a task: its ``file`` key, model views by (preprocessing, size), the
    de-identified facts the results may show, the modality its DICOM tag suggests, or
    ``error`` (then no views)."""

    file: str
    views: dict[View, np.ndarray] = field(default_factory=dict, repr=False)
    meta: dict[str, object] = field(default_factory=dict)
    tagged: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Source:
    """A batch input: ``kind`` (``folder``, ``csv``, ``zip``, ``video``, ``image`` or
    ``uploads``), where it is, and what to leave out."""

    kind: str
    location: Path | None
    uploads: Sequence[tuple[str, bytes]] = field(default=(), repr=False)
    every: int = 1
    exclude: Path | None = None

    def tasks(self) -> Iterator[Task]:
        """Every task in its fixed order, listed lazily."""
        listing = {"folder": self._folder, "csv": self._csv, "zip": self._zip,
                   "video": self._video, "image": self._image, "uploads": self._uploads}[self.kind]
        for index, fields in enumerate(listing()):
            yield Task(index, **fields)

    def expected_images(self) -> int | None:
        """How many images the run will see (multi-frame files may add more); ``None`` when
        listing them costs as much as reading them."""
        if self.kind == "csv":
            return None
        return sum(_images_of(task) for task in self.tasks())

    @property
    def _path(self) -> Path:
        assert self.location is not None
        return self.location

    def _folder(self) -> Iterator[dict[str, object]]:
        exclude = self.exclude.resolve() if self.exclude else None

        def walk(folder: Path) -> Iterator[dict[str, object]]:
            with os.scandir(folder) as scan:
                entries = sorted((e for e in scan if not e.name.startswith(".")),
                                 key=lambda e: e.name)
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    if path.resolve() != exclude:
                        yield from walk(path)
                else:
                    yield from _file_tasks(path.relative_to(self._path).as_posix(), path,
                                           self.every)

        return walk(self._path)

    def _csv(self) -> Iterator[dict[str, object]]:
        with open(self._path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            column = _path_column(reader.fieldnames)
            for line, row in enumerate(reader, start=2):
                value = (row.get(column) or "").strip()
                if not value:
                    yield {"name": f"{self._path.name} line {line}", "error": "no path given"}
                    continue
                path = Path(value)
                yield from _file_tasks(value, path if path.is_absolute() else
                                       self._path.parent / path, self.every)

    def _zip(self) -> Iterator[dict[str, object]]:
        with zipfile.ZipFile(self._path) as archive:
            names = sorted((info.filename for info in archive.infolist() if not info.is_dir()),
                           key=lambda name: name.split("/"))  # a folder's order
        for name in names:
            if not any(part.startswith(".") or part == "__MACOSX" for part in name.split("/")):
                yield {"name": name, "path": str(self._path), "member": name}

    def _video(self) -> Iterator[dict[str, object]]:
        return _video_tasks(self._path.name, self._path, self.every)

    def _image(self) -> Iterator[dict[str, object]]:
        yield {"name": self._path.name, "path": str(self._path)}

    def _uploads(self) -> Iterator[dict[str, object]]:
        for name, data in self.uploads:
            yield {"name": name, "data": data}


def open_source(
    location: str | os.PathLike[str] | Sequence[tuple[str, bytes]], *, every: int = 1,
    exclude: str | os.PathLike[str] | None = None,
) -> Source:
    """The batch input at ``location``: a folder (recursive; hidden entries and ``exclude``
    left out), a CSV with a ``path`` or ``file`` column (relative to the CSV's folder), a
    .zip, a video file (every ``every``-th frame), a single image, or uploads held in memory as
    (name, bytes) pairs. Raises :class:`InputError` when it cannot be read at all."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InputError("--every must be a whole number of 1 or more")
    if not isinstance(location, str | os.PathLike):
        uploads = [(str(name), bytes(data)) for name, data in location]
        return Source("uploads", None, uploads, every)
    path = Path(location)
    excluded = Path(exclude) if exclude is not None else None
    if path.is_dir():
        return Source("folder", path, every=every, exclude=excluded)
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file or folder")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened() or not capture.grab():
                raise InputError(f"{path.name}: {VIDEO_UNREADABLE}")
        finally:
            capture.release()
        return Source("video", path, every=every)
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            _path_column(next(csv.reader(handle), None))
        return Source("csv", path, every=every)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"{path.name}: the zip archive cannot be read ({exc})") from None
        return Source("zip", path, every=every)
    return Source("image", path, every=every)


def _path_column(header: Sequence[str] | None) -> str:
    columns = {name.strip().lower(): name for name in header or ()}
    for wanted in PATH_COLUMNS:
        if wanted in columns:
            return columns[wanted]
    raise InputError("the CSV needs a 'path' (or 'file') column naming one image per row")


def _file_tasks(name: str, path: Path, every: int) -> Iterator[dict[str, object]]:
    """The task of one listed file, or the chunks of a video file."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        yield from _video_tasks(name, path, every)
    else:
        yield {"name": name, "path": str(path)}


def _video_tasks(name: str, path: Path, every: int) -> Iterator[dict[str, object]]:
    """A video's kept frames in chunks of :data:`VIDEO_CHUNK` (the last reads on to the end),
    or one error task when no frame can be read."""
    frames, span = _frame_count(path), VIDEO_CHUNK * every
    if frames == 0:
        yield {"name": name, "error": f"{path.name}: {VIDEO_UNREADABLE}"}
        return
    chunks = -(-frames // span)
    for chunk in range(chunks):
        stop = None if chunk == chunks - 1 else (chunk + 1) * span
        yield {"name": name, "path": str(path), "video": (chunk * span, stop, every),
               "frames": frames}


def _images_of(task: Task) -> int:
    """The images a task gives (a multi-frame file counts as one)."""
    if task.video is None:
        return 1
    start, stop, every = task.video
    return len(range(start, task.frames if stop is None else stop, every))


def _frame_count(path: Path) -> int:
    """The container's frame count; counted by decoding when the container does not say (a
    chunk past the real end just comes back empty, one that ends early reads on to the end)."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            count = 0
            while capture.grab():
                count += 1
        return count
    finally:
        capture.release()


def decode_task(task: Task, spec: ViewSpec) -> list[Decoded]:
    """Every image of ``task`` with the model views ``spec`` asks for; unreadable images (or
    frames) become :class:`Decoded` entries with an error. Never raises for bad input."""
    if task.error:
        return [Decoded(task.name, error=task.error)]
    if task.video is not None:
        return [_with_views(f"{task.name}#{index}", image, spec)
                for index, image in _video_frames(task)]
    try:
        first = _load(task, 0 if spec.all_frames else None)
    except ImageInputError as exc:
        return [Decoded(task.name, error=exc.message)]
    count = int(first.meta.get("frame_count") or 1)
    if count == 1 or not spec.all_frames:
        return [_with_views(task.name, first, spec)]
    decoded = [_with_views(f"{task.name}#0", first, spec)]
    for frame in range(1, count):
        try:
            decoded.append(_with_views(f"{task.name}#{frame}", _load(task, frame), spec))
        except ImageInputError as exc:
            decoded.append(Decoded(f"{task.name}#{frame}", error=exc.message))
    return decoded


def load_original(task: Task, frame: int | None) -> LoadedImage:
    """The full image of ``task`` at ``frame`` (a video frame number, or a file's frame;
    ``None``: the file's default frame), as the loader gives it."""
    if task.video is not None:
        start, _, _ = task.video
        wanted = start if frame is None else frame
        frames = _video_frames(Task(task.index, task.name, task.path, video=(wanted, wanted + 1, 1)))
        for _, image in frames:
            return image
        raise ImageInputError("not_an_image", f"{task.name}: frame {wanted} cannot be read")
    return _load(task, frame)


def _load(task: Task, frame: int | None) -> LoadedImage:
    if task.data is not None:
        return load_image(task.data, name=task.name, frame=frame)
    if task.member is not None:
        return load_image(_zip_member(task), name=task.member, frame=frame)
    assert task.path is not None
    return load_path(task.path, name=task.name, frame=frame)


def _zip_member(task: Task) -> bytes:
    """A zip member's bytes, its declared and actual size checked against the loader's limit."""
    try:
        archive = _open_zip(task.path)
        info = archive.getinfo(task.member)
        _LIMITS.check_bytes(info.file_size)
        with archive.open(info) as handle:
            data = handle.read(_LIMITS.max_bytes + 1)
    except ImageInputError as exc:
        raise ImageInputError(exc.kind, f"{task.name}: {exc.message}") from None
    except (zipfile.BadZipFile, RuntimeError, OSError, KeyError, NotImplementedError):
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression.
        raise ImageInputError("not_an_image",
                              f"{task.name}: the zip member cannot be extracted") from None
    _LIMITS.check_bytes(len(data))
    return data


@functools.lru_cache(maxsize=4)
def _open_zip(path: str | None) -> zipfile.ZipFile:
    """One open archive per worker process: listing a big archive's directory once, not per task."""
    return zipfile.ZipFile(str(path))


def _video_frames(task: Task) -> Iterator[tuple[int, LoadedImage]]:
    """(frame number, RGB frame) of the task's frames; a frame that cannot be decoded ends it."""
    assert task.video is not None and task.path is not None
    start, stop, every = task.video
    capture = cv2.VideoCapture(task.path)
    try:
        if start:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        index = start
        while stop is None or index < stop:
            keep = (index - start) % every == 0
            ok, frame = capture.read() if keep else (capture.grab(), None)
            if not ok:
                return
            if keep:
                rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                meta = {"format": "video", "width": rgb.shape[1], "height": rgb.shape[0],
                        "frame": index}
                yield index, LoadedImage(rgb, meta)
            index += 1
    finally:
        capture.release()


def _with_views(file: str, image: LoadedImage, spec: ViewSpec) -> Decoded:
    meta = {"width": image.rgb.shape[1], "height": image.rgb.shape[0],
            "frame": image.meta.get("frame") if int(image.meta.get("frame_count") or 1) > 1
            or image.meta.get("format") == "video" else None,
            "dicom_modality": image.meta.get("modality"), "body_part": image.meta.get("body_part")}
    try:
        check_shape(image.rgb.shape[1], image.rgb.shape[0])
        views = {view: preprocess(image.rgb, *view) for view in spec.needed(image.suggested_modality)}
    except ImageInputError as exc:
        return Decoded(file, meta=meta, error=exc.message)
    return Decoded(file, views, meta, image.suggested_modality)
