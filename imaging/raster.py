"""Raster images (PNG, JPEG, TIFF, BMP, GIF, WebP) through Pillow."""

from __future__ import annotations

import contextlib
import io
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .convert import finish_rgb, grey_to_rgb, robust_range, scale_to_uint8
from .datatypes import Limits, LoadedImage, check_frame
from .errors import ImageInputError
from .quiet import STDERR

__all__ = ["PIL_FORMATS", "decode_raster"]

# Pillow plugins we accept. Everything else (TGA, PSD, ICO, EPS, ...) is refused
# up front: fewer parsers exposed, and headerless formats cannot claim random bytes.
# (Multi-picture JPEGs from phones open through "JPEG" as format "MPO".)
PIL_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP")

# What Pillow raises for malformed files (its own Image.open treats the middle ones so).
_PIL_ERRORS = (OSError, EOFError, SyntaxError, ValueError, TypeError, IndexError, struct.error)

# Modes whose values do not fit 8 bits: scaled over their robust range.
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def decode_raster(data: bytes, *, frame: int | None, limits: Limits) -> LoadedImage | None:
    """Decode ``data`` with Pillow, or return None when no accepted format recognises it.

    The size of the selected frame is checked before any pixel is decoded.
    ``frame`` picks a page of a multi-page TIFF / animated GIF (default 0).
    """
    try:
        image = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except UnidentifiedImageError:
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large() from None
    except _PIL_ERRORS as exc:
        raise _decode_error(exc, None) from None
    with image:
        try:
            frame_count = getattr(image, "n_frames", 1)
            check_frame(frame, frame_count)
            index = int(frame or 0)
            image.seek(index)
            limits.check_pixels(*image.size)
            if image.format == "PNG":
                _verify_png(data)
            # libtiff prints a damaged file's complaints to the process's stderr.
            with STDERR() if image.format == "TIFF" else contextlib.nullcontext():
                image.load()
        except ImageInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_large() from None
        except _PIL_ERRORS as exc:
            raise _decode_error(exc, image.format) from None
        oriented = _apply_orientation(image)
        rgb = to_rgb(oriented)
        fmt = "jpeg" if image.format == "MPO" else str(image.format).lower()
    height, width = rgb.shape[:2]
    meta: dict[str, object] = {
        "format": fmt,
        "width": width,
        "height": height,
        "frame_count": frame_count,
        "frame": index,
        "mode": oriented.mode,
    }
    return LoadedImage(rgb=rgb, meta=meta, suggested_modality=None)


def to_rgb(image: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to (H, W, 3) uint8.

    16-bit, 32-bit and float grey images are scaled from their 0.5th..99.5th
    percentiles to 0..255; transparent images are composited on black.
    """
    if image.mode in _HIGH_DEPTH_MODES:
        values = np.asarray(image)
        return finish_rgb(grey_to_rgb(scale_to_uint8(values, *robust_range(values))))
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[:, :, 3:]
        return finish_rgb((rgba[:, :, :3] * alpha + 127) // 255)
    try:
        converted = image.convert("RGB")
    except ValueError:
        raise ImageInputError("unsupported", f"unsupported colour mode {image.mode!r}") from None
    return finish_rgb(np.asarray(converted))


def _verify_png(data: bytes) -> None:
    """Check every chunk's CRC (Pillow's ``load`` skips those of the image data)."""
    with Image.open(io.BytesIO(data), formats=("PNG",)) as probe:
        probe.verify()


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - orientation is optional metadata
        return image


def _too_large() -> ImageInputError:
    return ImageInputError("too_large", "the image has too many pixels to decode safely")


def _decode_error(exc: BaseException, fmt: str | None) -> ImageInputError:
    label = "JPEG" if fmt == "MPO" else (fmt or "image")
    if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
        return ImageInputError("truncated", f"the {label} file is truncated (incomplete)")
    return ImageInputError("not_an_image", f"the {label} file is damaged and cannot be decoded")
