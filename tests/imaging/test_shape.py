"""Degenerate shapes (tiny images, thin strips) are refused by the reader, rasters and DICOM alike."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from imaging import load_image
from imaging.datatypes import MAX_ASPECT, MIN_SIDE
from tests.imaging.builders import assert_rejected, dicom_bytes, encode


def _png(width: int, height: int) -> bytes:
    return encode(Image.new("L", (width, height), 128), "PNG")


@pytest.mark.parametrize(
    ("width", "height", "kind"),
    [
        (1, 1, "too_small"),
        (MIN_SIDE - 1, 64, "too_small"),
        (64, MIN_SIDE - 1, "too_small"),
        (4000, 1, "bad_shape"),
        (1, 4000, "bad_shape"),
        (MIN_SIDE, MAX_ASPECT * MIN_SIDE + 1, "bad_shape"),
    ],
)
def test_degenerate_raster_is_refused(width: int, height: int, kind: str) -> None:
    error = assert_rejected(_png(width, height), kind, name="odd.png")
    assert error.message.startswith("odd.png: the image ") and f"{width}x{height}" in error.message


@pytest.mark.parametrize(("width", "height"), [(MIN_SIDE, MIN_SIDE),
                                               (MIN_SIDE, MAX_ASPECT * MIN_SIDE)])
def test_limits_themselves_are_accepted(width: int, height: int) -> None:
    assert load_image(_png(width, height)).rgb.shape == (height, width, 3)


def test_tiny_dicom_is_refused() -> None:
    def shrink(ds: Dataset) -> None:
        ds.Rows = ds.Columns = 8
        ds.PixelData = np.zeros((8, 8), np.uint16).tobytes()

    assert_rejected(dicom_bytes("MR_small.dcm", shrink), "too_small")
