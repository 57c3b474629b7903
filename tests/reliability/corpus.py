"""The bad-input corpus (hostile, broken and odd files, built in memory) and the fuzzers' seeds.

Each :class:`Case` names a file, builds its bytes and says what loading it must give: ``"ok"``
for a file that is legitimately readable, else the expected ``ImageInputError.kind``.
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID

from tests.imaging.builders import (
    PNG_SIGNATURE,
    SVG,
    bundled_dicom,
    dicom_bytes,
    encode,
    noise_image,
    noise_jpeg,
    noise_png,
    photo,
    png_with_header,
    with_bad_crc,
)

__all__ = ["CASES", "OK", "SEEDS", "Case"]

OK = "ok"
# Declared sizes of the decompression bombs: 2.5 and 4.2 gigapixels in files of a few hundred bytes.
_PNG_BOMB_SIDE = 50_000
_JPEG_BOMB_SIDE = 65_000


@dataclass(frozen=True)
class Case:
    """One corpus file: its bytes, the name it is uploaded as, what loading it must give."""

    name: str
    build: Callable[[], bytes]
    filename: str
    expected: str

    @property
    def readable(self) -> bool:
        """Whether the file is legitimately readable (else it must be refused)."""
        return self.expected == OK


def _first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _jpeg_declaring(side: int) -> bytes:
    """The noise JPEG with its frame header (SOF0) declaring ``side`` x ``side`` pixels."""
    data = bytearray(noise_jpeg())
    at = data.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), then height, width
    data[at : at + 4] = struct.pack(">HH", side, side)
    return bytes(data)


def _sixteen_bit() -> bytes:
    ramp = np.linspace(0, 65535, 48 * 32).reshape(32, 48).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def _animated_gif() -> bytes:
    first, *rest = (Image.new("P", (24, 16), index) for index in range(3))
    return encode(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)


def _multi_page_tiff() -> bytes:
    image = noise_image()
    return encode(image, "TIFF", save_all=True, append_images=[image.convert("L")])


def _tiff_with_damaged_directory() -> bytes:
    """An LZW TIFF (decoded by libtiff) whose first directory claims 500 entries."""
    data = encode(noise_image(), "TIFF", compression="tiff_lzw")
    directory = struct.unpack("<I", data[4:8])[0]
    return data[:directory] + struct.pack("<H", 500) + data[directory + 2 :]


def _without_pixels(ds: Dataset) -> None:
    del ds.PixelData


def _as_monochrome1(ds: Dataset) -> None:
    ds.PhotometricInterpretation = "MONOCHROME1"


def _as_hevc(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.107")  # HEVC/H.265 video


def _declaring_length(keyword: str, length: int) -> Callable[[], bytes]:
    """CT_small (explicit VR little endian) whose ``keyword`` element declares ``length`` bytes."""

    def build() -> bytes:
        data = bundled_dicom("CT_small.dcm").read_bytes()
        value_at = pydicom.dcmread(io.BytesIO(data)).get_item(Tag(keyword)).value_tell
        return data[: value_at - 2] + struct.pack("<H", length) + data[value_at:]

    return build


def _bundled(name: str) -> Callable[[], bytes]:
    return lambda: bundled_dicom(name).read_bytes()


def _edited(name: str, edit: Callable[[Dataset], None]) -> Callable[[], bytes]:
    return lambda: dicom_bytes(name, edit)


CASES: tuple[Case, ...] = (
    Case("empty file", lambda: b"", "empty.png", "empty"),
    Case(
        "random bytes", lambda: np.random.default_rng(7).bytes(4096), "random.jpg", "not_an_image"
    ),
    Case("text", lambda: b"patient notes: nothing to see\n" * 20, "notes.png", "not_an_image"),
    Case("png signature only", lambda: PNG_SIGNATURE, "signature.png", "not_an_image"),
    Case("truncated png", lambda: _first_half(noise_png()), "truncated.png", "truncated"),
    Case("truncated jpeg", lambda: _first_half(noise_jpeg()), "truncated.jpg", "truncated"),
    Case("png bad IHDR crc", lambda: with_bad_crc(noise_png(), b"IHDR"), "crc.png", "not_an_image"),
    Case(
        "png bad IDAT crc", lambda: with_bad_crc(noise_png(), b"IDAT"), "crc2.png", "not_an_image"
    ),
    Case("jpeg named .png", noise_jpeg, "photo.png", OK),
    Case(
        "png bomb",
        lambda: png_with_header(_PNG_BOMB_SIDE, _PNG_BOMB_SIDE),
        "bomb.png",
        "too_large",
    ),
    Case("jpeg bomb", lambda: _jpeg_declaring(_JPEG_BOMB_SIDE), "bomb.jpg", "too_large"),
    Case("png above max_pixels", lambda: png_with_header(8000, 8000), "big.png", "too_large"),
    Case("png zero height", lambda: png_with_header(10, 0), "flat.png", "not_an_image"),
    Case("png zero width", lambda: png_with_header(0, 10), "thin.png", "not_an_image"),
    Case("1x1 png", lambda: encode(noise_image(1), "PNG"), "pixel.png", "too_small"),
    Case(
        "1x4000 strip png",
        lambda: encode(Image.new("L", (4000, 1), 128), "PNG"),
        "strip.png",
        "bad_shape",
    ),
    Case("16-bit png", _sixteen_bit, "deep.png", OK),
    Case("1-bit png", lambda: encode(noise_image().convert("1"), "PNG"), "bilevel.png", OK),
    Case("animated gif", _animated_gif, "animated.gif", OK),
    Case("cmyk jpeg", lambda: encode(noise_image().convert("CMYK"), "JPEG"), "cmyk.jpg", OK),
    Case("multi-page tiff", _multi_page_tiff, "pages.tiff", OK),
    Case("tiff damaged directory", _tiff_with_damaged_directory, "damaged.tiff", "not_an_image"),
    Case("svg", lambda: SVG, "drawing.svg", "unsupported"),
    Case(
        "svg without xml declaration", lambda: b"  <svg width='1'></svg>", "bare.svg", "unsupported"
    ),
    Case(
        "pdf",
        lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "report.pdf",
        "unsupported",
    ),
    # A complete image object without pixel data cannot be told from one cut short.
    Case(
        "dicom without pixel data",
        _edited("CT_small.dcm", _without_pixels),
        "bare.dcm",
        "truncated",
    ),
    # Rows (US) declaring 4 bytes: the reader steps back to a lower tag.
    Case("dicom wrong VR length", _declaring_length("Rows", 4), "vr.dcm", "not_an_image"),
    # Image Type declaring 23 of its 22 bytes: the reader meets a VR that is no VR.
    Case("dicom length off by one", _declaring_length("ImageType", 23), "vr2.dcm", "not_an_image"),
    Case(
        "dicom unsupported transfer syntax",
        _edited("JPEG2000.dcm", _as_hevc),
        "hevc.dcm",
        "missing_codec",
    ),
    Case("dicom multi-frame", _bundled("SC_rgb_rle_2frame.dcm"), "cine.dcm", OK),
    Case("dicom MONOCHROME1", _edited("MR_small.dcm", _as_monochrome1), "mono1.dcm", OK),
    Case("DICOMDIR", _bundled("dicomdirtests/DICOMDIR"), "DICOMDIR", "no_pixels"),
    Case(
        "dicom preamble then garbage",
        lambda: bytes(128) + b"DICM" + np.random.default_rng(3).bytes(2048),
        "garbage.dcm",
        "not_an_image",
    ),
)


@functools.cache
def _photo_image() -> Image.Image:
    return Image.open(io.BytesIO(photo())).convert("RGB")


# Well-formed files the fuzzers mutate: one real image in three raster formats, and DICOMs of
# several transfer syntaxes, photometric interpretations and frame counts.
SEEDS: dict[str, Callable[[], bytes]] = {
    "png": lambda: encode(_photo_image(), "PNG"),
    "jpeg": photo,
    "tiff-lzw": lambda: encode(_photo_image(), "TIFF", compression="tiff_lzw"),
    "dicom-explicit-le-ct": _bundled("CT_small.dcm"),
    "dicom-big-endian-mr": _bundled("MR_small_bigendian.dcm"),
    "dicom-implicit-rtdose-15-frames": _bundled("rtdose.dcm"),
    "dicom-jpeg2000-mr": _bundled("MR_small_jp2klossless.dcm"),
    "dicom-rle-rgb-2-frames": _bundled("SC_rgb_rle_2frame.dcm"),
    "dicom-jpeg-ybr": _bundled("SC_rgb_small_odd_jpeg.dcm"),
}
