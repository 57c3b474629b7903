"""Several files in one upload: a .zip of images or of a DICOM series, unpacked in memory.

A worklist upload is a list of (name, bytes); any of them may be a zip archive (told by its
content, not its name). Archives are opened with Python's ``zipfile`` and nothing is written
to disk. Limits are checked from the archive's directory before a member is inflated, and a
member that inflates beyond its declared size is stopped (a zip bomb lies in its directory).
Names keep only their base name (no folder of the archive or of the sender's disk); folders,
hidden files and macOS resource forks are skipped; an archive inside an archive is passed on
as a file (the reader refuses it with its usual message).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from .datatypes import Limits
from .errors import ImageInputError

__all__ = ["MAX_FILES", "NamedFile", "base_name", "content_digest", "expand_uploads"]

MAX_FILES = 500
"""Most files one worklist takes (archive members included)."""
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an archive's first member, or an empty one
_DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class NamedFile:
    """One file of a worklist: its base name and its bytes."""

    name: str
    data: bytes


def content_digest(data: bytes) -> str:
    """Short content hash that identifies a file in caches (no name, no metadata)."""
    return hashlib.sha256(data).hexdigest()[:16]


def base_name(name: str) -> str:
    """The last part of a path (either separator), printable characters only, at most 120."""
    last = name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return "".join(ch for ch in last if ch.isprintable())[:120] or "unnamed"


def expand_uploads(
    uploads: Iterable[tuple[str, bytes]], *, limits: Limits = _DEFAULT_LIMITS,
    max_files: int = MAX_FILES,
) -> tuple[list[NamedFile], list[str]]:
    """The files of an upload with every zip archive replaced by its members, and a message
    per archive that could not be (fully) read. Raises :class:`ImageInputError` (``too_large``)
    when the files, members included, exceed ``max_files``."""
    files: list[NamedFile] = []
    problems: list[str] = []
    for name, data in uploads:
        if not data.startswith(_ZIP_MAGIC):
            files.append(NamedFile(base_name(name), data))
        else:
            members, problem = _members(base_name(name), data, limits, max_files)
            files.extend(members)
            if problem:
                problems.append(problem)
        if len(files) > max_files:
            raise ImageInputError("too_large", f"more than {max_files} files in one worklist")
    return files, problems


def _members(name: str, data: bytes, limits: Limits,
              max_files: int) -> tuple[list[NamedFile], str | None]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        return [], f"{name}: the zip archive is damaged and cannot be opened"
    entries = [info for info in archive.infolist() if not _skipped(info)]
    if len(entries) > max_files:
        return [], f"{name}: more than {max_files} files in the archive"
    if sum(info.file_size for info in entries) > max_files * limits.max_bytes:
        return [], f"{name}: the archive unpacks to too much data"
    members, failed = [], 0
    for info in entries:
        if info.flag_bits & 0x1 or info.file_size > limits.max_bytes:
            failed += 1  # encrypted, or over the single-file limit
            continue
        try:
            with archive.open(info) as member:
                content = member.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
            failed += 1
            continue
        if len(content) != info.file_size:
            failed += 1  # inflates beyond (or short of) what the directory declares
            continue
        members.append(NamedFile(base_name(info.filename), content))
    if not entries:
        return [], f"{name}: the zip archive holds no file"
    problem = (f"{name}: {failed} of {len(entries)} files in the archive could not be read "
               "(damaged, encrypted or too large)") if failed else None
    return members, problem


def _skipped(info: zipfile.ZipInfo) -> bool:
    parts = info.filename.replace("\\", "/").split("/")
    return info.is_dir() or parts[0] == "__MACOSX" or parts[-1].startswith(".")
