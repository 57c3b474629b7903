"""The names other packages code against."""

from __future__ import annotations

import dataclasses

import pytest

import imaging
from imaging import MODALITIES, Limits, Window, suggest_modality

CONTRACT = {
    "MODALITIES",
    "suggest_modality",
    "ImageInputError",
    "Limits",
    "Window",
    "LoadedImage",
    "load_image",
    "load_path",
    "PREPROCESSING",
    "preprocess",
    "crop_to_brain",
}


def test_public_names() -> None:
    assert set(imaging.__all__) >= CONTRACT
    for name in imaging.__all__:
        assert hasattr(imaging, name)


def test_modalities() -> None:
    assert MODALITIES == ("endoscopy", "mri", "xray", "histology")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("MR", "mri"),
        (" mr ", "mri"),
        ("CR", "xray"),
        ("DX", "xray"),
        ("DR", "xray"),
        ("RG", "xray"),
        ("ES", "endoscopy"),
        ("SM", "histology"),
        ("GM", "histology"),
        ("MG", None),
        ("CT", None),
        ("US", None),
        ("", None),
        (None, None),
    ],
)
def test_suggest_modality(code: str | None, expected: str | None) -> None:
    assert suggest_modality(code) == expected


def test_limits_and_window() -> None:
    assert Limits() == Limits(max_bytes=64 * 2**20, max_pixels=60_000_000)
    assert dataclasses.is_dataclass(Window) and Window(40, 400).width == 400
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits().max_bytes = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        Limits(max_bytes=0)
