"""In-memory builders for test inputs (nothing is written to disk), and the rejection check."""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from imaging import ImageInputError, load_image
from tests.conftest import shared_data_root

__all__ = [
    "PNG_SIGNATURE",
    "SVG",
    "assert_rejected",
    "bundled_dicom",
    "dicom_bytes",
    "encode",
    "noise_image",
    "noise_jpeg",
    "noise_png",
    "photo",
    "png_chunk",
    "png_with_header",
    "with_bad_crc",
    "zip_bytes",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


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


def with_bad_crc(data: bytes, chunk: bytes) -> bytes:
    """``data`` (a PNG) with one byte of ``chunk``'s CRC flipped."""
    start = data.index(chunk) - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    crc_at = start + 8 + length
    return data[:crc_at] + bytes([data[crc_at] ^ 0xFF]) + data[crc_at + 1 :]


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """Save ``image`` to bytes in ``fmt``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise_image(size: int = 64) -> Image.Image:
    """A ``size`` x ``size`` RGB image of seeded uniform noise."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@functools.cache
def noise_png() -> bytes:
    """A 64 x 64 RGB noise PNG."""
    return encode(noise_image(), "PNG")


@functools.cache
def noise_jpeg() -> bytes:
    """A 64 x 64 RGB noise JPEG."""
    return encode(noise_image(), "JPEG", quality=90)


@functools.cache
def photo() -> bytes:
    """A real chest X-ray JPEG from the shared data, else a generated 256 x 256 stand-in."""
    root = shared_data_root()
    found = sorted((root / "chest-xray-pneumonia" / "normal").glob("*.jpg")) if root else []
    if found:
        return found[0].read_bytes()
    y, x = np.mgrid[0:256, 0:256]
    grey = 128 + 60 * np.sin(x / 19) * np.cos(y / 23) + np.random.default_rng(1).normal(0, 12, x.shape)
    return encode(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).convert("RGB"), "JPEG")


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


def assert_rejected(data: bytes, kind: str, **options: object) -> ImageInputError:
    """``load_image`` raises an ImageInputError of ``kind`` with a short, one-line message."""
    with pytest.raises(ImageInputError) as caught:
        load_image(data, **options)  # type: ignore[arg-type]
    error = caught.value
    assert error.kind == kind, error.message
    assert str(error) == error.message
    assert "Traceback" not in error.message and "\n" not in error.message
    assert len(error.message) < 300
    return error


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip archive of ``members`` (name -> bytes), built in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
