"""Maps on the model's view go back to the right place on the uploaded image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from imaging import ViewGeometry, display_shape, load_path, preprocess, preprocess_with_geometry
from imaging.preprocess import brain_box


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _scan(shared_data: Path) -> np.ndarray:
    path = sorted((shared_data / "brain-tumor-mri" / "glioma").glob("*.jpg"))[3]
    return load_path(path).rgb


@pytest.mark.parametrize("name", ["resize", "brain_mri"])
def test_the_view_carried_back_lies_on_the_image_it_came_from(
    name: str, shared_data: Path
) -> None:
    """The model's view itself, used as a map and carried back, matches the image inside the
    box, at the uploaded resolution and at a display size a quarter of it."""
    rgb = _scan(shared_data)
    rgb = cv2.resize(rgb, (rgb.shape[1] * 3, rgb.shape[0] * 3), interpolation=cv2.INTER_CUBIC)
    view, geometry = preprocess_with_geometry(rgb, name, 224)
    assert np.array_equal(view, preprocess(rgb, name, 224))
    assert (geometry.height, geometry.width, geometry.size) == (*rgb.shape[:2], 224)
    for shape in (None, (rgb.shape[0] // 4, rgb.shape[1] // 4)):
        back, covered = geometry.to_image(_grey(view), shape)
        target = _grey(rgb if shape is None else cv2.resize(rgb, shape[::-1],
                                                             interpolation=cv2.INTER_AREA))
        assert back.shape == covered.shape == target.shape
        assert _correlation(back[covered], target[covered]) > 0.95
        shifted = np.roll(back, 12 if shape is None else 3, axis=1)  # control: a small offset
        assert _correlation(shifted[covered], target[covered]) < 0.93


@pytest.mark.parametrize("name", ["resize", "brain_mri"])
def test_an_image_map_cut_into_the_view_lies_on_the_view(name: str, shared_data: Path) -> None:
    """The image itself as a map (at its own and at half resolution), cut into the view, is
    the view (what region masks rely on in training)."""
    rgb = _scan(shared_data)
    view, geometry = preprocess_with_geometry(rgb, name, 224)
    for grey in (_grey(rgb), cv2.resize(_grey(rgb), (rgb.shape[1] // 2, rgb.shape[0] // 2))):
        cut = geometry.to_view(grey)
        assert cut.shape == (224, 224) and cut.dtype == np.float32
        if name == "resize":  # brain_mri also filters the view, so compare by correlation
            assert np.abs(cut - _grey(view)).mean() < 0.03
        assert _correlation(cut, _grey(view)) > 0.95
        assert _correlation(np.roll(cut, 12, axis=1), _grey(view)) < 0.93


def test_the_mri_box_is_where_the_brain_was_cut_and_nothing_lies_outside(
    shared_data: Path,
) -> None:
    rgb = _scan(shared_data)
    _, geometry = preprocess_with_geometry(rgb, "brain_mri", 224)
    left, top, right, bottom = geometry.box
    assert geometry.box == brain_box(rgb) and geometry.cropped
    back, covered = geometry.to_image(np.ones((224, 224), np.float32))
    assert covered.sum() == (right - left) * (bottom - top)
    assert covered[top:bottom, left:right].all() and not back[~covered].any()
    assert back[covered].min() == pytest.approx(1.0)


def test_resize_geometry_equals_opencv_resize() -> None:
    cam = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    geometry = ViewGeometry(90, 150, (0, 0, 150, 90), 32)
    back, covered = geometry.to_image(cam)
    assert not geometry.cropped and covered.all()
    np.testing.assert_array_equal(back, cv2.resize(cam, (150, 90), interpolation=cv2.INTER_LINEAR))


def test_box_on_a_scaled_copy_and_bad_geometries() -> None:
    geometry = ViewGeometry(2000, 1000, (100, 400, 900, 1800), 224)
    assert geometry.box_on((500, 250)) == (25, 100, 225, 450)
    tiny_box = ViewGeometry(2000, 1000, (100, 400, 101, 401), 224)
    assert tiny_box.box_on((200, 100)) == (10, 40, 11, 41)
    assert tiny_box.box_on((2, 1)) == (0, 0, 1, 1)  # never empty
    with pytest.raises(ValueError, match="not inside"):
        ViewGeometry(100, 100, (0, 0, 101, 100), 32)
    with pytest.raises(ValueError, match="expected a 224 x 224 map"):
        geometry.to_image(np.zeros((32, 32)))


@pytest.mark.parametrize(
    ("shape", "side", "expected"),
    [((2000, 2000), 1024, (1024, 1024)), ((3000, 1500), 1024, (1024, 512)),
     ((500, 400), 1024, (500, 400)), ((3000, 1500), None, (3000, 1500))],
)
def test_display_shape_caps_the_longer_side(shape, side, expected) -> None:
    assert display_shape(*shape, side) == expected
