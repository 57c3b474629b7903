"""Decoder failures keep their one-line user message and leave a DEBUG trace for the developer."""

from __future__ import annotations

import logging

import pytest
from pydicom.dataset import Dataset

import imaging.loader
from imaging import ImageInputError, load_image
from tests.imaging.builders import assert_rejected, dicom_bytes, noise_png

SECRET = "Doe^Jane-0042"


def _damage_rle(ds: Dataset) -> None:
    """Flip bytes just past the RLE header; keep an identifier in the header to hunt for."""
    ds.PatientName = SECRET
    data = bytearray(ds.PixelData)
    for i in range(30, 430):
        data[i] ^= 0xA5
    ds.PixelData = bytes(data)


def _imaging_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("imaging")]


def test_damaged_dicom_logs_type_and_frames_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    error = assert_rejected(dicom_bytes("MR_small_RLE.dcm", _damage_rle), "not_an_image")
    assert error.message == "the DICOM pixel data is damaged and cannot be decoded"
    records = _imaging_records(caplog)
    assert len(records) == 1
    record = records[0]
    assert record.name == "imaging.dicom" and record.levelno == logging.DEBUG
    text = record.getMessage()
    assert "RuntimeError" in text and "_decode_frame" in text
    assert record.exc_info is None and SECRET not in caplog.text


def test_unexpected_error_keeps_its_message_and_is_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise KeyError(SECRET)

    monkeypatch.setattr(imaging.loader, "decode_raster", broken)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ImageInputError) as caught:
        load_image(noise_png(), name="scan.png")
    assert caught.value.message == "scan.png: the file could not be read as an image"
    records = _imaging_records(caplog)
    assert [(r.name, r.levelno) for r in records] == [("imaging.loader", logging.DEBUG)]
    assert "KeyError" in records[0].getMessage() and "broken" in records[0].getMessage()
    assert SECRET not in caplog.text and "scan.png" not in caplog.text


def test_good_file_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    load_image(noise_png())
    assert _imaging_records(caplog) == []
