"""Options, limits, ``load_path`` and the error type (the bad-file corpus is in tests/reliability)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from imaging import ERROR_KINDS, ImageInputError, Limits, load_image, load_path
from tests.imaging.builders import SVG, assert_rejected, noise_png, png_with_header


@pytest.mark.parametrize("label", ["SVG", "PDF"])
def test_unsupported_message_names_the_format(label: str) -> None:
    data = SVG if label == "SVG" else b"%PDF-1.4\n"
    error = assert_rejected(data, "unsupported")
    assert error.message == f"unsupported format: {label}, upload PNG, JPEG, TIFF or DICOM"


def test_name_prefixes_the_message() -> None:
    error = assert_rejected(b"", "empty", name="upload.png")
    assert error.message == "upload.png: the file is empty"


def test_too_many_bytes() -> None:
    assert_rejected(noise_png(), "too_large", limits=Limits(max_bytes=100))


def test_too_many_pixels_for_custom_limit() -> None:
    assert_rejected(noise_png(), "too_large", limits=Limits(max_pixels=64 * 64 - 1))
    assert load_image(noise_png(), limits=Limits(max_pixels=64 * 64)).rgb.shape == (64, 64, 3)


@pytest.mark.parametrize("frame", [-1, 1.5, "0", True])
def test_bad_frame_option(frame: object) -> None:
    assert_rejected(noise_png(), "bad_option", frame=frame)


def test_non_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        load_image("not bytes")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_are_accepted() -> None:
    data = noise_png()
    assert load_image(bytearray(data)).rgb.shape == (64, 64, 3)
    assert load_image(memoryview(data)).rgb.shape == (64, 64, 3)


# --- load_path ----------------------------------------------------------------------------


def test_load_path_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.bin"
    path.write_bytes(noise_png())
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
        "too_small",
        "bad_shape",
    }
    with pytest.raises(ValueError):
        ImageInputError("oops", "unknown kind")


def test_handmade_png_builder_is_valid() -> None:
    """Guards the bad-input tests: the same builder with sane sizes gives a real PNG."""
    row = b"\x00" + bytes([16, 32, 64, 128] * 4)  # filter byte, then 16 grey pixels
    loaded = load_image(png_with_header(16, 16, row * 16))
    assert loaded.rgb.shape == (16, 16, 3)
    assert loaded.rgb[1, :4, 0].tolist() == [16, 32, 64, 128]
