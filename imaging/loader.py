"""Entry points: sniff the bytes, dispatch to the raster or DICOM reader, map every failure."""

from __future__ import annotations

import logging
import os
import stat

from .datatypes import Limits, LoadedImage, Window, check_frame, check_shape, normalize_window
from .dicom import decode_dicom
from .errors import ImageInputError, log_swallowed
from .quiet import LIBRARY_OUTPUT
from .raster import decode_raster

__all__ = ["load_image", "load_path"]

_ACCEPTED = "PNG, JPEG, TIFF or DICOM"

# (offset, magic bytes, label) of formats we recognise only to refuse them clearly.
_UNSUPPORTED_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "PDF"),
    (0, b"PK\x03\x04", "ZIP archive"),
    (0, b"\x1f\x8b", "gzip archive"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (4, b"ftyp", "HEIC/AVIF/MP4"),
    (344, b"n+1\x00", "NIfTI"),
    (344, b"ni1\x00", "NIfTI"),
)
# Magic bytes of accepted raster formats, used only to word the error for a damaged file.
_RASTER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
)

_DEFAULT_LIMITS = Limits()
_LOG = logging.getLogger(__name__)

# Decodes run in parallel: each call has its own Pillow image (whose codecs release the GIL)
# or pydicom data set, no library setting is changed, and the pylibjpeg plugins keep no state.
# Only the silencing of process-wide output is shared (counted, see imaging.quiet).


def load_image(
    data: bytes,
    *,
    name: str | None = None,
    frame: int | None = None,
    window: Window | None = None,
    limits: Limits = _DEFAULT_LIMITS,
) -> LoadedImage:
    """Decode an uploaded file (PNG, JPEG, TIFF, BMP, GIF, WebP or DICOM) for display.

    The format is detected from the content; ``name`` only prefixes error
    messages. ``frame`` selects a page/frame (default: first page, or the
    middle DICOM frame); ``window`` overrides the DICOM VOI window of grey
    images. Degenerate shapes are refused (see :func:`check_shape`). Every
    failure raises :class:`ImageInputError`; nothing is written.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"load_image expects bytes, got {type(data).__name__}")
    _check_limits(limits)
    try:
        check_frame(frame)
        window = normalize_window(window)
        data = bytes(data)
        if not data:
            raise ImageInputError("empty", "the file is empty")
        limits.check_bytes(len(data))
        with LIBRARY_OUTPUT():
            loaded = _dispatch(data, frame=frame, window=window, limits=limits)
        height, width = loaded.rgb.shape[:2]
        check_shape(width, height)
        return loaded
    except ImageInputError as err:
        raise ImageInputError(err.kind, _named(name, err.message)) from None
    except MemoryError:
        raise ImageInputError(
            "too_large", _named(name, "not enough memory to decode the image")
        ) from None
    except Exception as exc:  # noqa: BLE001 - the contract: only ImageInputError escapes
        log_swallowed(_LOG, exc)
        raise ImageInputError(
            "not_an_image", _named(name, "the file could not be read as an image")
        ) from None


def load_path(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    frame: int | None = None,
    window: Window | None = None,
    limits: Limits = _DEFAULT_LIMITS,
) -> LoadedImage:
    """Read a file (its size checked with ``stat`` first) and :func:`load_image` it."""
    _check_limits(limits)
    name = name if name is not None else os.path.basename(os.fspath(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageInputError("not_an_image", _named(name, "the file does not exist")) from None
    except OSError:
        raise ImageInputError("not_an_image", _named(name, "the file cannot be accessed")) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageInputError("not_an_image", _named(name, "this is not a regular file"))
    try:
        limits.check_bytes(info.st_size)
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
        limits.check_bytes(len(data))
    except ImageInputError as err:
        raise ImageInputError(err.kind, _named(name, err.message)) from None
    except OSError:
        raise ImageInputError("not_an_image", _named(name, "the file cannot be read")) from None
    return load_image(data, name=name, frame=frame, window=window, limits=limits)


def _dispatch(
    data: bytes, *, frame: int | None, window: Window | None, limits: Limits
) -> LoadedImage:
    has_preamble = data[128:132] == b"DICM"
    if not has_preamble:
        unsupported = _unsupported_format(data)
        if unsupported:
            raise ImageInputError(
                "unsupported", f"unsupported format: {unsupported}, upload {_ACCEPTED}"
            )
        loaded = decode_raster(data, frame=frame, limits=limits)
        if loaded is not None:
            return loaded
        label = _raster_label(data)
        if label:
            raise ImageInputError(
                "not_an_image", f"the {label} file is damaged and cannot be opened"
            )
    # A file with the DICM preamble, or a last try as a bare DICOM data set.
    loaded = decode_dicom(data, frame=frame, window=window, limits=limits, raw=not has_preamble)
    if loaded is None:
        raise ImageInputError("not_an_image", f"this is not an image file; upload {_ACCEPTED}")
    return loaded


def _check_limits(limits: Limits) -> None:
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be imaging.Limits, got {type(limits).__name__}")


def _unsupported_format(data: bytes) -> str | None:
    for offset, magic, label in _UNSUPPORTED_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return label
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if (head.startswith(b"<?xml") or head.startswith(b"<svg")) and b"<svg" in head:
        return "SVG"
    return None


def _raster_label(data: bytes) -> str | None:
    return next((label for magic, label in _RASTER_MAGIC if data.startswith(magic)), None)


def _named(name: str | None, message: str) -> str:
    """Prefix a message with the file's base name (printable characters only)."""
    if not name:
        return message
    base = "".join(ch for ch in os.path.basename(name) if ch.isprintable())[:80]
    return f"{base}: {message}" if base else message
