"""Hostile and broken inputs: every failure is an ImageInputError of the right kind."""

from __future__ import annotations

import pickle
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging import ERROR_KINDS, ImageInputError, Limits, LoadedImage, load_image, load_path
from tests.conftest import shared_data_root
from tests.imaging.builders import PNG_SIGNATURE, bundled_dicom, encode, png_with_header


def _noise_image(size: int = 64) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _png() -> bytes:
    return encode(_noise_image(), "PNG")


def _jpeg() -> bytes:
    return encode(_noise_image(), "JPEG", quality=90)


def _with_bad_crc(data: bytes, chunk: bytes) -> bytes:
    """Flip one byte of ``chunk``'s CRC."""
    start = data.index(chunk) - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    crc_at = start + 8 + length
    return data[:crc_at] + bytes([data[crc_at] ^ 0xFF]) + data[crc_at + 1 :]


def _raises(data: bytes, kind: str, **options: object) -> ImageInputError:
    with pytest.raises(ImageInputError) as caught:
        load_image(data, **options)  # type: ignore[arg-type]
    error = caught.value
    assert error.kind == kind, error.message
    assert str(error) == error.message
    assert "Traceback" not in error.message and "\n" not in error.message
    assert len(error.message) < 300
    return error


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'

BAD_INPUTS: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "empty"),
    "random bytes": (lambda: np.random.default_rng(7).bytes(4096), "not_an_image"),
    "text": (lambda: b"patient notes: nothing to see here\n" * 20, "not_an_image"),
    "svg": (lambda: SVG, "unsupported"),
    "svg without xml declaration": (lambda: b"  <svg width='1' height='1'></svg>", "unsupported"),
    "pdf": (lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "unsupported"),
    "truncated png": (lambda: _png()[: len(_png()) // 2], "truncated"),
    "truncated jpeg": (lambda: _jpeg()[: len(_jpeg()) // 2], "truncated"),
    "png with bad IHDR crc": (lambda: _with_bad_crc(_png(), b"IHDR"), "not_an_image"),
    "png with bad IDAT crc": (lambda: _with_bad_crc(_png(), b"IDAT"), "not_an_image"),
    "png bomb 100000x100000": (lambda: png_with_header(100_000, 100_000), "too_large"),
    "png 8000x8000 above max_pixels": (lambda: png_with_header(8000, 8000), "too_large"),
    "png zero width": (lambda: png_with_header(0, 10), "not_an_image"),
    "png signature only": (lambda: PNG_SIGNATURE, "not_an_image"),
    "dicom magic and garbage": (
        lambda: bytes(128) + b"DICM" + np.random.default_rng(3).bytes(2048),
        "not_an_image",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_raises_the_right_kind(case: str) -> None:
    build, kind = BAD_INPUTS[case]
    started = time.perf_counter()
    _raises(build(), kind)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("label", ["SVG", "PDF"])
def test_unsupported_message_names_the_format(label: str) -> None:
    data = SVG if label == "SVG" else b"%PDF-1.4\n"
    error = _raises(data, "unsupported")
    assert error.message == f"unsupported format: {label}, upload PNG, JPEG, TIFF or DICOM"


def test_name_prefixes_the_message() -> None:
    assert _raises(b"", "empty", name="upload.png").message == "upload.png: the file is empty"


def test_too_many_bytes() -> None:
    _raises(_png(), "too_large", limits=Limits(max_bytes=100))


def test_too_many_pixels_for_custom_limit() -> None:
    _raises(_png(), "too_large", limits=Limits(max_pixels=64 * 64 - 1))
    assert load_image(_png(), limits=Limits(max_pixels=64 * 64)).rgb.shape == (64, 64, 3)


@pytest.mark.parametrize("frame", [-1, 1.5, "0", True])
def test_bad_frame_option(frame: object) -> None:
    _raises(_png(), "bad_option", frame=frame)


def test_non_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        load_image("not bytes")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = _png()
    assert load_image(bytearray(data)).rgb.shape == (64, 64, 3)
    assert load_image(memoryview(data)).rgb.shape == (64, 64, 3)


# --- load_path ----------------------------------------------------------------------------


def test_load_path_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.bin"
    path.write_bytes(_png())
    assert load_path(path).meta["format"] == "png"
    assert load_path(str(path)).rgb.shape == (64, 64, 3)


def test_load_path_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError) as caught:
        load_path(tmp_path / "absent.png")
    assert caught.value.kind == "not_an_image"
    assert caught.value.message == "absent.png: the file does not exist"


def test_load_path_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError) as caught:
        load_path(tmp_path)
    assert caught.value.kind == "not_an_image"


def test_load_path_checks_size_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as handle:  # sparse: 1 GiB declared, nothing to read
        handle.truncate(2**30)
    started = time.perf_counter()
    with pytest.raises(ImageInputError) as caught:
        load_path(path)
    assert caught.value.kind == "too_large"
    assert time.perf_counter() - started < 1


def test_load_path_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(ImageInputError) as caught:
        load_path(path)
    assert caught.value.kind == "empty"


# --- the error type -------------------------------------------------------------------------


def test_error_type_contract() -> None:
    error = ImageInputError("truncated", "the file is cut short")
    assert isinstance(error, ValueError)
    assert (error.kind, error.message, str(error)) == (
        "truncated",
        "the file is cut short",
        "the file is cut short",
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.kind, copy.message) == (error.kind, error.message)
    assert set(ERROR_KINDS) == {
        "empty",
        "truncated",
        "not_an_image",
        "unsupported",
        "too_large",
        "no_pixels",
        "missing_codec",
        "bad_option",
    }
    with pytest.raises(ValueError):
        ImageInputError("oops", "unknown kind")


# --- deterministic mini-fuzz ------------------------------------------------------------------


def _mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    """Byte flips, truncations, insertions and duplicated spans of ``data``."""
    rng = np.random.default_rng(seed)
    mutated = []
    for _ in range(count):
        buffer = bytearray(data)
        strategy = rng.integers(4)
        at = int(rng.integers(len(buffer)))
        if strategy == 0:
            for position in rng.integers(len(buffer), size=int(rng.integers(1, 12))):
                buffer[position] = int(rng.integers(256))
        elif strategy == 1:
            del buffer[at:]
        elif strategy == 2:
            buffer[at:at] = rng.bytes(int(rng.integers(1, 64)))
        else:
            buffer[at:at] = buffer[at : at + int(rng.integers(1, 256))]
        mutated.append(bytes(buffer))
    return mutated


def _real_png() -> bytes:
    root = shared_data_root()
    masks = sorted((root / "kvasir-seg" / "masks").glob("*.png")) if root else []
    return masks[0].read_bytes() if masks else encode(_noise_image(128).convert("L"), "PNG")


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(_real_png, id="png"),
        pytest.param(lambda: bundled_dicom("CT_small.dcm").read_bytes(), id="dicom"),
        pytest.param(
            lambda: bundled_dicom("MR_small_jp2klossless.dcm").read_bytes(), id="dicom-j2k"
        ),
    ],
)
def test_mutations_raise_only_image_input_error(source: Callable[[], bytes]) -> None:
    for seed, data in enumerate(_mutations(source(), count=200, seed=2024)):
        try:
            loaded = load_image(data)
        except ImageInputError as error:
            assert error.kind in ERROR_KINDS
            assert "Traceback" not in error.message
            continue
        assert isinstance(loaded, LoadedImage), seed
        assert loaded.rgb.ndim == 3 and loaded.rgb.shape[2] == 3 and loaded.rgb.dtype == np.uint8


def test_handmade_png_builder_is_valid() -> None:
    """Guards the bad-input tests: the same builder with sane sizes gives a real PNG."""
    row = b"\x00" + bytes([16, 32, 64, 128])  # filter byte, then 4 grey pixels
    loaded = load_image(png_with_header(4, 2, row * 2))
    assert loaded.rgb.shape == (2, 4, 3)
    assert loaded.rgb[1, :, 0].tolist() == [16, 32, 64, 128]
