"""Raster decoding: every Pillow mode x format, bit depths, orientation, pages, real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imaging import ImageInputError, load_image, load_path
from tests.imaging.builders import encode

WIDTH, HEIGHT = 48, 32

# Modes each format can store (Pillow 12+): what the issue asks to support.
MODES_BY_FORMAT = {
    "PNG": ("1", "L", "P", "RGB", "RGBA", "I;16", "LA"),
    "TIFF": ("1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I", "F", "LA", "PA", "YCbCr"),
    "BMP": ("1", "L", "P", "RGB"),
    "JPEG": ("L", "RGB", "CMYK"),
    "GIF": ("L", "P"),
    "WEBP": ("RGB", "RGBA"),
}
CASES = [(fmt, mode) for fmt, modes in MODES_BY_FORMAT.items() for mode in modes]


def _ramp() -> np.ndarray:
    """A left-to-right ramp 0..1 of shape (HEIGHT, WIDTH)."""
    return np.tile(np.linspace(0.0, 1.0, WIDTH), (HEIGHT, 1))


def _image(mode: str) -> Image.Image:
    """A left-to-right brightness ramp in ``mode``."""
    ramp = _ramp()
    if mode in ("I;16", "I;16B"):  # (Pillow's convert() to I;16B clips to 255)
        values = (ramp * 60000 + 1000).astype(">u2" if mode == "I;16B" else "<u2")
        return Image.frombytes(mode, (WIDTH, HEIGHT), values.tobytes())
    if mode == "I":
        return Image.fromarray((ramp * 2e6 - 1e6).astype(np.int32))
    if mode == "F":
        return Image.fromarray((ramp * 3.5 - 1.0).astype(np.float32))
    grey = Image.fromarray((ramp * 255).astype(np.uint8))
    colour = Image.merge("RGB", (grey, grey.point(lambda v: v // 2), grey))
    if mode in ("1", "L"):
        return grey.convert(mode)
    opaque = Image.new("L", grey.size, 255)
    if mode == "LA":
        return Image.merge("LA", (grey, opaque))
    if mode == "RGBA":
        return Image.merge("RGBA", (*colour.split(), opaque))
    if mode == "PA":
        return colour.convert("P").convert("PA")
    return colour.convert(mode)


@pytest.mark.parametrize(("fmt", "mode"), CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_every_mode_and_format_decodes(fmt: str, mode: str) -> None:
    source = _image(mode)
    data = encode(source, fmt)
    loaded = load_image(data, name=f"ramp.{fmt.lower()}")
    rgb = loaded.rgb
    assert rgb.shape == (HEIGHT, WIDTH, 3)
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert loaded.meta["format"] == fmt.lower()
    assert (loaded.meta["width"], loaded.meta["height"]) == (WIDTH, HEIGHT)
    assert loaded.meta["frame_count"] == 1 and loaded.meta["frame"] == 0
    assert loaded.suggested_modality is None
    brightness = rgb.astype(np.float64).mean(axis=(0, 2))
    assert brightness[-WIDTH // 4 :].mean() > brightness[: WIDTH // 4].mean() + 50


@pytest.mark.parametrize(
    ("fmt", "dtype", "scale", "outlier"),
    [
        ("PNG", np.uint16, 4095, 65535),
        ("TIFF", np.uint16, 30000, 65535),
        ("TIFF", np.float32, 1e-3, 1e3),
    ],
)
def test_high_bit_depth_keeps_order_and_uses_full_range(
    fmt: str, dtype: type, scale: float, outlier: float
) -> None:
    values = (_ramp() * scale).astype(dtype)
    values[0, 0] = outlier  # one hot pixel must not decide the scale (robust percentiles)
    shown = load_image(encode(Image.fromarray(values), fmt)).rgb
    row = shown[HEIGHT // 2, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0), "scaling must keep the ordering"
    assert row[0] <= 5 and row[-1] >= 250
    assert np.array_equal(shown[:, :, 0], shown[:, :, 1])


def test_float_with_non_finite_values() -> None:
    values = _ramp().astype(np.float32)
    values[0, :4] = (np.nan, np.inf, -np.inf, np.nan)
    shown = load_image(encode(Image.fromarray(values), "TIFF")).rgb
    assert shown.shape == (HEIGHT, WIDTH, 3)
    assert shown[HEIGHT // 2, -1, 0] > shown[HEIGHT // 2, 0, 0]


def test_transparency_is_composited_on_black() -> None:
    rgba = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgba[:, :, :3] = 255
    rgba[:, : WIDTH // 2, 3] = 0
    rgba[:, WIDTH // 2 :, 3] = 128
    shown = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")).rgb
    assert shown[:, : WIDTH // 2].max() == 0
    assert np.all(np.abs(shown[:, WIDTH // 2 :].astype(int) - 128) <= 1)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), "black")
    image.paste((255, 0, 0), (0, 0, 10, 10))  # red block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = load_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert loaded.rgb.shape == (40, 20, 3)
    top_right = loaded.rgb[:8, -8:].astype(int)
    assert top_right[:, :, 0].mean() > 200 and top_right[:, :, 1].mean() < 60


def _pages() -> list[Image.Image]:
    return [
        Image.new("RGB", (30 + 10 * i, 20), colour)
        for i, colour in enumerate(("red", "lime", "blue"))
    ]


def _dominant_channel(rgb: np.ndarray) -> int:
    return int(np.argmax(rgb.reshape(-1, 3).mean(axis=0)))


@pytest.mark.parametrize("fmt", ["TIFF", "GIF"])
def test_pages_and_frames(fmt: str) -> None:
    first, *rest = _pages()
    data = encode(first, fmt, save_all=True, append_images=rest)
    default = load_image(data)
    assert default.meta["frame_count"] == 3 and default.meta["frame"] == 0
    assert _dominant_channel(default.rgb) == 0
    for index in (1, 2):
        picked = load_image(data, frame=index)
        assert picked.meta["frame"] == index
        assert _dominant_channel(picked.rgb) == index
    for bad in (3, -1):
        with pytest.raises(ImageInputError) as caught:
            load_image(data, frame=bad)
        assert caught.value.kind == "bad_option"


def test_tiff_pages_keep_their_own_size() -> None:
    first, *rest = _pages()
    data = encode(first, "TIFF", save_all=True, append_images=rest)
    assert load_image(data, frame=2).rgb.shape == (20, 50, 3)


def test_format_comes_from_content_not_name() -> None:
    data = encode(_image("RGB"), "PNG")
    assert load_image(data, name="scan.jpg").meta["format"] == "png"


REAL_IMAGES = {
    "brain-tumor-mri": "glioma",
    "chest-xray-pneumonia": "normal",
    "wce-bleeding": "bleeding",
    "lc25000-lung": "lung_aca",
    "kvasir-seg": "images",
}


@pytest.mark.parametrize("dataset", REAL_IMAGES)
def test_real_images_load(dataset: str, shared_data: Path) -> None:
    path = min((shared_data / dataset / REAL_IMAGES[dataset]).glob("*.jpg"))
    loaded = load_path(path)
    assert loaded.rgb.shape == (256, 256, 3)
    assert loaded.meta["format"] == "jpeg"
    assert loaded.rgb.std() > 5


def test_real_mask_png_loads(shared_data: Path) -> None:
    loaded = load_path(min((shared_data / "kvasir-seg" / "masks").glob("*.png")))
    assert loaded.rgb.shape == (256, 256, 3)
    assert set(np.unique(loaded.rgb)) <= {0, 255}
