"""Real images that no shipped model was trained for, grouped in families, for measuring the
out-of-distribution guards (``bench/ood.py`` and the tests).

- ``photos``: scikit-image's natural photographs and textures (``skimage.data``, bundled).
- ``documents``: scanned text and a page from ``skimage.data``.
- ``other_medical``: fundus photographs and cell / immunohistochemistry microscopy from
  ``skimage.data`` (medical, but no modality the app serves).
- ``dicom_other``: DICOM modalities the app has no model for (CT, ultrasound, nuclear
  medicine), decoded to RGB so that the Modality tag cannot help: the staged files of
  ``<data>/dicom`` (by their ``SOURCES.csv``), else pydicom's bundled test files.
- ``generated``: blank, noise, gradient and checkerboard images made here.

Every family yields ``(name, rgb)`` pairs, rgb ``(H, W, 3)`` uint8.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from imaging import ImageInputError, load_path

__all__ = ["DICOM_OTHER_MODALITIES", "FAMILIES", "ood_family"]

DICOM_OTHER_MODALITIES = frozenset({"CT", "US", "NM"})
_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "coins", "moon", "clock",
           "brick", "grass", "gravel", "hubble_deep_field", "colorwheel", "logo")
_DOCUMENTS = ("page", "text")
_OTHER_MEDICAL = ("retina", "microaneurysms", "immunohistochemistry", "cell")


def _rgb(image: np.ndarray) -> np.ndarray:
    """Any skimage array (grey, bool, RGBA) as ``(H, W, 3)`` uint8."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def _skimage(names: tuple[str, ...]) -> Iterator[tuple[str, np.ndarray]]:
    from skimage import data

    for name in names:
        yield name, _rgb(getattr(data, name)())


def _dicom_files(data_root: Path | None) -> list[Path]:
    staged = data_root / "dicom" / "SOURCES.csv" if data_root else None
    if staged is not None and staged.is_file():
        with staged.open(newline="", encoding="utf-8") as handle:
            return [staged.parent / row["file"] for row in csv.DictReader(handle)
                    if row["Modality"] in DICOM_OTHER_MODALITIES]
    import pydicom
    from pydicom.data import get_testdata_file

    found = []
    for name in ("CT_small.dcm", "US1_UNCR.dcm", "JPEG2000.dcm", "emri_small.dcm"):
        path = get_testdata_file(name)
        if path and str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality")) \
                in DICOM_OTHER_MODALITIES:
            found.append(Path(path))
    return found


def _dicom(data_root: Path | None) -> Iterator[tuple[str, np.ndarray]]:
    for path in _dicom_files(data_root):
        try:
            yield path.name, load_path(path).rgb
        except ImageInputError:  # the staged negatives (truncated, undecodable) are no images
            continue


def _generated() -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 256, dtype=np.float32)
    board = (np.indices((256, 256)).sum(0) // 32 % 2 * 255).astype(np.uint8)
    images = {
        "black": np.zeros((256, 256), np.uint8),
        "white": np.full((256, 256), 255, np.uint8),
        "grey": np.full((256, 256), 128, np.uint8),
        "noise_grey": rng.integers(0, 256, (256, 256), dtype=np.uint8),
        "noise_colour": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
        "gradient": np.broadcast_to(ramp, (256, 256)).astype(np.uint8),
        "checkerboard": board,
    }
    for name, image in images.items():
        yield name, _rgb(image)


FAMILIES: dict[str, Callable[[Path | None], Iterator[tuple[str, np.ndarray]]]] = {
    "photos": lambda _root: _skimage(_PHOTOS),
    "documents": lambda _root: _skimage(_DOCUMENTS),
    "other_medical": lambda _root: _skimage(_OTHER_MEDICAL),
    "dicom_other": _dicom,
    "generated": lambda _root: _generated(),
}


def ood_family(family: str, data_root: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """The ``(name, rgb)`` images of one family (``data_root``: the staged data, if any)."""
    return list(FAMILIES[family](data_root))
