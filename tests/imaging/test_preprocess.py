"""Preprocessing shared by training and inference."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from imaging import PREPROCESSING, PREPROCESSORS, crop_to_brain, load_path, preprocess
from imaging.preprocess import brain_mri

SHAPES = [(256, 256), (300, 120), (17, 400), (1, 1), (64, 64)]


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _head(size: int = 200) -> np.ndarray:
    """A bright textured ellipse on a black background (a synthetic 'head')."""
    image = np.zeros((size, size, 3), dtype=np.uint8)
    cv2.ellipse(
        image, (size // 2, size // 2), (size // 3, size // 4), 0, 0, 360, (150, 150, 150), -1
    )
    texture = np.random.default_rng(1).integers(0, 60, image.shape, dtype=np.uint8)
    return np.where(image > 0, image + texture, 0).astype(np.uint8)


def test_registry_matches_the_contract() -> None:
    assert PREPROCESSING == ("resize", "brain_mri", "mask_frame")
    assert tuple(PREPROCESSORS) == PREPROCESSING


@pytest.mark.parametrize("name", PREPROCESSING)
@pytest.mark.parametrize(("height", "width"), SHAPES)
@pytest.mark.parametrize("size", [224, 32])
def test_output_shape_and_dtype(name: str, height: int, width: int, size: int) -> None:
    out = preprocess(_noise(height, width), name, size)
    assert out.shape == (size, size, 3)
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_resize_interpolation() -> None:
    big, small = _noise(400, 300), _noise(20, 30)
    shrunk = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
    grown = cv2.resize(small, (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(preprocess(big, "resize", 64), shrunk)
    assert np.array_equal(preprocess(small, "resize", 64), grown)


def test_registry_and_function_agree() -> None:
    image = _head()
    assert np.array_equal(preprocess(image, "brain_mri", 96), brain_mri(image, 96))
    assert not np.array_equal(brain_mri(image, 96), brain_mri(image, 96, d=5, sigma_color=10))


def test_crop_to_brain_on_synthetic_head() -> None:
    cropped = crop_to_brain(_head(200))
    # the ellipse spans 2*66+1 by 2*50+1 pixels; erosion/dilation may move the edge by a pixel
    assert abs(cropped.shape[1] - 133) <= 3 and abs(cropped.shape[0] - 101) <= 3
    assert cropped[cropped.shape[0] // 2, 2:-2, 0].min() > 0  # the middle row is all head


@pytest.mark.parametrize(
    "image", [np.zeros((64, 80, 3), np.uint8), np.full((30, 30, 3), 255, np.uint8)]
)
def test_flat_images_do_not_crash(image: np.ndarray) -> None:
    assert crop_to_brain(image).shape[:2] == image.shape[:2]
    assert preprocess(image, "brain_mri", 48).shape == (48, 48, 3)


def test_brain_mri_on_real_scans(shared_data: Path) -> None:
    paths = sorted((shared_data / "brain-tumor-mri" / "glioma").glob("*.jpg"))[:20]
    cropped_some = 0
    for path in paths:
        rgb = load_path(path).rgb
        crop = crop_to_brain(rgb)
        assert crop.shape[0] <= rgb.shape[0] and crop.shape[1] <= rgb.shape[1]
        assert crop.size >= 0.2 * rgb.size, f"{path.name}: cropped away most of the head"
        if crop.shape[0] < rgb.shape[0] and crop.shape[1] < rgb.shape[1]:
            cropped_some += 1
            assert crop.mean() > rgb.mean(), f"{path.name}: the crop should drop dark border"
            assert not np.array_equal(
                preprocess(rgb, "brain_mri", 128), preprocess(rgb, "resize", 128)
            )
    assert cropped_some >= len(paths) // 2


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="resize, brain_mri"):
        preprocess(_noise(8, 8), "sharpen", 8)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3), np.float32),
        np.zeros((0, 8, 3), np.uint8),
    ],
)
def test_bad_images_are_value_errors(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        preprocess(bad, "resize", 8)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_bad_sizes_are_value_errors(size: object) -> None:
    with pytest.raises(ValueError):
        preprocess(_noise(8, 8), "resize", size)  # type: ignore[arg-type]


def test_mask_frame_is_resize_with_the_furniture_blacked_out() -> None:
    from imaging.preprocess import frame_keep, kept_region, mask_frame

    image = np.full((120, 150, 3), 200, np.uint8)
    view = mask_frame(image, 64)
    keep = frame_keep(64)
    assert np.array_equal(view[keep], preprocess(image, "resize", 64)[keep])
    assert not view[~keep].any()
    assert 0.6 < keep.mean() < 0.7  # the share of the view the model still sees
    assert not keep[63, 0] and not keep[40, 2] and not keep[0, 63] and keep[32, 32]
    assert kept_region("mask_frame", 64) is keep and kept_region("resize", 64) is None
    with pytest.raises(ValueError):
        keep[0, 0] = True  # shared by every call: read-only


@pytest.mark.slow
def test_masked_views_no_longer_tell_the_colonoscopy_sources_apart(shared_data: Path) -> None:
    """The lower-left box, the field-of-view corners and burned-in text differ between the
    polyp frames (Kvasir-SEG) and the frames without polyps (HyperKvasir); in the masked view
    no pixel's share of black differs by more than 0.1 between the two."""
    from imaging.preprocess import frame_keep

    def dark_share(paths: list[Path], name: str) -> np.ndarray:
        views = [preprocess(load_path(p).rgb, name, 64) for p in paths]
        return np.mean([v.max(axis=2) < 25 for v in views], axis=0)

    polyps = sorted((shared_data / "kvasir-seg" / "images").glob("*.jpg"))
    others = sorted((shared_data / "hyperkvasir-lower-gi").glob("*/*.jpg"))
    before = np.abs(dark_share(polyps, "resize") - dark_share(others, "resize"))
    after = np.abs(dark_share(polyps, "mask_frame") - dark_share(others, "mask_frame"))
    assert before.max() > 0.5  # the box alone gives the source away
    assert after[frame_keep(64)].max() < 0.1 and after.max() < 0.1
