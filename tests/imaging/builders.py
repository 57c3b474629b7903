"""In-memory builders for test inputs (nothing is written to disk)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

__all__ = ["bundled_dicom", "dicom_bytes", "encode", "png_chunk", "png_with_header"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_with_header(width: int, height: int, pixels: bytes = b"\x00") -> bytes:
    """An 8-bit grey PNG whose IHDR declares ``width`` x ``height`` (the data may be far smaller)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(pixels))
        + png_chunk(b"IEND", b"")
    )


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """Save ``image`` to bytes in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def bundled_dicom(name: str) -> Path:
    """A test file shipped inside the pydicom wheel (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with pydicom"
    return Path(str(path))


def dicom_bytes(name: str, edit: Callable[[Dataset], None] | None = None) -> bytes:
    """A bundled DICOM file, optionally edited, re-encoded to bytes."""
    ds = pydicom.dcmread(bundled_dicom(name))
    if edit is not None:
        edit(ds)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()
