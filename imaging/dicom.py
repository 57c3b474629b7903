"""DICOM images through pydicom 3 and its pixel-data plugins."""

from __future__ import annotations

import copy
import io
import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    apply_windowing,
    convert_color_space,
    get_decoder,
)
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)
from pydicom.valuerep import STANDARD_VR

from .convert import finish_rgb, grey_to_rgb, scale_to_uint8
from .datatypes import Limits, LoadedImage, Window, check_frame
from .errors import ImageInputError, log_swallowed
from .modality import suggest_modality

__all__ = ["decode_dicom"]

_LOG = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_FLOAT_BITS = {"FloatPixelData": 32, "DoubleFloatPixelData": 64}

# Transfer syntaxes whose decoder comes from a pip package (all exposed to
# pydicom as its "pylibjpeg" plugin). Pillow covers only part of them.
_PLUGIN = "pylibjpeg"
_DECODER_PACKAGES: dict[str, str] = {
    **dict.fromkeys(
        (
            JPEGBaseline8Bit,
            JPEGExtended12Bit,
            JPEGLossless,
            JPEGLosslessSV1,
            JPEGLSLossless,
            JPEGLSNearLossless,
        ),
        "pylibjpeg-libjpeg",
    ),
    **dict.fromkeys(
        (JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K),
        "pylibjpeg-openjpeg",
    ),
}
# Names of transfer syntaxes newer than pydicom 3.0's UID dictionary.
_EXTRA_SYNTAX_NAMES = {"1.2.840.10008.1.2.8.1": "Deflated Image Frame Compression"}

# Attributes that enhanced multi-frame objects move into functional groups.
_FUNCTIONAL_GROUPS: dict[str, tuple[str, ...]] = {
    "PixelMeasuresSequence": ("PixelSpacing",),
    "PixelValueTransformationSequence": ("RescaleSlope", "RescaleIntercept", "RescaleType"),
    "FrameVOILUTSequence": ("WindowCenter", "WindowWidth", "VOILUTFunction"),
}
_TOP_LEVEL = (
    "PhotometricInterpretation",
    "BitsStored",
    "PixelRepresentation",
    "ModalityLUTSequence",
    "VOILUTSequence",
    "ImagerPixelSpacing",
    *(keyword for keywords in _FUNCTIONAL_GROUPS.values() for keyword in keywords),
)
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
# (implicit VR, little endian) as read -> transfer syntax, for bare data sets.
_ENCODINGS = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}
_CODE_STRING = re.compile(r"[A-Z0-9_ ]{1,16}")


@dataclass(frozen=True)
class _Geometry:
    rows: int
    columns: int
    frames: int
    samples: int
    bits_allocated: int
    photometric: str


def decode_dicom(
    data: bytes, *, frame: int | None, window: Window | None, limits: Limits, raw: bool = False
) -> LoadedImage | None:
    """Decode one frame of a DICOM file (default: the middle frame).

    With ``raw=True`` the bytes are read as a bare data set without preamble
    (pydicom ``force=True``); None is returned unless they look like DICOM
    (a SOP Class UID, or Rows and Columns).
    Sizes are checked against ``limits`` before any pixel data is decoded.
    """
    ds = _read(data, raw)
    if ds is None:
        return None
    try:
        return _decode_dataset(ds, frame=frame, window=window, limits=limits, raw=raw)
    except ImageInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed elements fail lazily, on first access
        if raw:
            return None
        log_swallowed(_LOG, exc)
        raise _damaged() from None


def _decode_dataset(
    ds: Dataset, *, frame: int | None, window: Window | None, limits: Limits, raw: bool
) -> LoadedImage | None:
    pixel_keyword = next((keyword for keyword in _PIXEL_KEYWORDS if keyword in ds), None)
    has_size = "Rows" in ds and "Columns" in ds
    if not (has_size or _sop_class(ds) is not None):
        # Almost any bytes "parse" (force=True, or garbage after "DICM"): this is not DICOM.
        if raw:
            return None
        raise _damaged()
    if pixel_keyword is None:
        if _misread(ds):
            raise _damaged()
        if has_size or _is_image_sop_class(ds):
            raise ImageInputError(
                "truncated", "the DICOM file ends before its pixel data is complete"
            )
        raise ImageInputError(
            "no_pixels",
            "the DICOM file contains no image (it may be a report, an RT plan or a DICOMDIR)",
        )
    geometry = _geometry(ds, pixel_keyword)
    limits.check_pixels(geometry.columns, geometry.rows, values=geometry.frames * geometry.samples)
    check_frame(frame, geometry.frames)
    index = geometry.frames // 2 if frame is None else int(frame)
    syntax = _transfer_syntax(ds)
    decoder = _decoder(syntax)
    if not syntax.is_encapsulated:
        _check_native_length(ds, pixel_keyword, geometry)
    pixels, photometric = _decode_frame(ds, syntax, decoder, index)
    view = _frame_attributes(ds, index)
    rgb, used_window = _to_display(pixels, photometric, ds, view, geometry, window)
    modality = _code_string(ds.get("Modality"))
    meta: dict[str, object] = {
        "format": "dicom",
        "width": geometry.columns,
        "height": geometry.rows,
        "modality": modality,
        "body_part": _code_string(ds.get("BodyPartExamined")),
        "pixel_spacing": _pixel_spacing(view),
        "frame_count": geometry.frames,
        "frame": index,
        "photometric": _code_string(geometry.photometric),
        "transfer_syntax": _syntax_name(syntax),
        "bits_stored": _optional_int(ds.get("BitsStored")),
        "window": used_window,
    }
    return LoadedImage(
        rgb=finish_rgb(rgb), meta=meta, suggested_modality=suggest_modality(modality)
    )


def _sop_class(ds: Dataset) -> UID | None:
    file_meta = getattr(ds, "file_meta", None)
    value = ds.get("SOPClassUID") or (
        file_meta.get("MediaStorageSOPClassUID") if file_meta else None
    )
    return UID(str(value)) if value else None


def _is_image_sop_class(ds: Dataset) -> bool:
    """An "... Image Storage" object without pixel data was cut short, not a report."""
    sop_class = _sop_class(ds)
    return sop_class is not None and "Image Storage" in sop_class.name


def _read(data: bytes, raw: bool) -> Dataset | None:
    try:
        return pydicom.dcmread(io.BytesIO(data), force=raw)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for malformed input
        if raw:
            return None
        log_swallowed(_LOG, exc)
        raise _damaged() from None


def _damaged() -> ImageInputError:
    return ImageInputError("not_an_image", "the DICOM file is damaged and cannot be read")


def _misread(ds: Dataset) -> bool:
    """Whether a wrong element length sent the reader off into the bytes of later elements.

    Elements are stored in ascending tag order (PS3.5 7.1) and ``keys()`` keeps the read
    order; in an explicit-VR data set, misread bytes also give VRs that are not VRs.
    """
    tags = list(ds.keys())
    if any(after <= before for before, after in zip(tags, tags[1:], strict=False)):
        return True
    implicit, _ = ds.original_encoding
    return implicit is False and any(ds.get_item(tag).VR not in STANDARD_VR for tag in tags)


def _header_int(ds: Dataset, keyword: str, default: int) -> int:
    """Read a non-negative integer attribute; garbage is a damaged file."""
    try:
        value = ds.get(keyword)
        number = default if value is None or value == "" else int(value)
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0:
        raise ImageInputError("not_an_image", "the DICOM image attributes are invalid")
    return number


def _geometry(ds: Dataset, pixel_keyword: str) -> _Geometry:
    return _Geometry(
        rows=_header_int(ds, "Rows", 0),
        columns=_header_int(ds, "Columns", 0),
        frames=_header_int(ds, "NumberOfFrames", 1) or 1,
        samples=_header_int(ds, "SamplesPerPixel", 1) or 1,
        bits_allocated=_header_int(ds, "BitsAllocated", _FLOAT_BITS.get(pixel_keyword, 0)),
        photometric=str(ds.get("PhotometricInterpretation", "") or "").strip().upper(),
    )


def _transfer_syntax(ds: Dataset) -> UID:
    """The data set's transfer syntax; a bare data set gets the encoding it was read with."""
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax:
        return UID(syntax)
    syntax = _ENCODINGS.get(ds.original_encoding, ExplicitVRLittleEndian)
    ds.file_meta.TransferSyntaxUID = syntax
    return syntax


def _check_native_length(ds: Dataset, pixel_keyword: str, geometry: _Geometry) -> None:
    """Refuse uncompressed pixel data shorter than Rows x Columns x frames x samples."""
    stored_samples = (
        2 if geometry.photometric == "YBR_FULL_422" and geometry.samples == 3 else geometry.samples
    )
    bits = (
        geometry.rows
        * geometry.columns
        * geometry.frames
        * stored_samples
        * geometry.bits_allocated
    )
    if len(ds[pixel_keyword].value or b"") < math.ceil(bits / 8):
        raise ImageInputError("truncated", "the DICOM pixel data is truncated (incomplete)")


def _decode_frame(ds: Dataset, syntax: UID, decoder: Decoder, index: int) -> tuple[np.ndarray, str]:
    """Decode only frame ``index``; YBR is converted to RGB by pydicom (``as_rgb``)."""
    try:
        pixels, info = decoder.as_array(ds, index=index, as_rgb=True)
    except Exception as exc:  # noqa: BLE001 - plugins raise arbitrary types on corrupt data
        log_swallowed(_LOG, exc)
        package = _DECODER_PACKAGES.get(syntax)
        if package and _PLUGIN not in decoder.available_plugins:
            raise _missing_codec(syntax, package) from None
        raise ImageInputError(
            "not_an_image", "the DICOM pixel data is damaged and cannot be decoded"
        ) from None
    return pixels, str(info.get("photometric_interpretation", "")).upper()


def _decoder(syntax: UID) -> Decoder:
    """pydicom's decoder for ``syntax``; ``missing_codec`` when there is none or it lacks its plugins."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise _missing_codec(syntax, None) from None
    if not decoder.is_available:
        raise _missing_codec(syntax, _DECODER_PACKAGES.get(syntax))
    return decoder


def _missing_codec(syntax: UID, package: str | None) -> ImageInputError:
    name = _syntax_name(syntax)
    if package:
        return ImageInputError(
            "missing_codec",
            f"cannot decode {name} pixel data: install the Python package {package}",
        )
    return ImageInputError(
        "missing_codec",
        f"cannot decode the pixel data: no decoder exists for its transfer syntax ({name}); "
        "convert the file to an uncompressed or JPEG transfer syntax",
    )


def _syntax_name(syntax: UID) -> str:
    """The transfer syntax's name; an unknown one as its UID when that is a plain UID."""
    if syntax in _EXTRA_SYNTAX_NAMES:
        return _EXTRA_SYNTAX_NAMES[syntax]
    if syntax.is_transfer_syntax:
        return syntax.name
    return str(syntax) if re.fullmatch(r"[0-9.]{1,64}", syntax) else "unknown"


def _frame_attributes(ds: Dataset, index: int) -> Dataset:
    """Collect the display attributes of frame ``index`` into a small data set.

    Top-level values are overridden by the shared, then the per-frame
    functional groups of enhanced multi-frame objects.
    """
    view = Dataset()
    view.file_meta = ds.file_meta  # endianness of OW lookup tables
    for keyword in _TOP_LEVEL:
        if keyword in ds:
            view[keyword] = copy.deepcopy(ds[keyword])
    for item in _functional_group_items(ds, index):
        for sequence_keyword, keywords in _FUNCTIONAL_GROUPS.items():
            sequence = item.get(sequence_keyword)
            for keyword in keywords if sequence else ():
                if keyword in sequence[0]:
                    view[keyword] = copy.deepcopy(sequence[0][keyword])
    return view


def _functional_group_items(ds: Dataset, index: int) -> list[Dataset]:
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    items = [shared[0]] if shared else []
    if per_frame and index < len(per_frame):
        items.append(per_frame[index])
    return items


def _to_display(
    pixels: np.ndarray,
    photometric: str,
    ds: Dataset,
    view: Dataset,
    geometry: _Geometry,
    window: Window | None,
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Turn decoded pixels into (H, W, 3) uint8 and the window actually used."""
    if photometric == "PALETTE COLOR":
        colour = apply_color_lut(pixels, ds)
        return _colour_to_uint8(colour, 8 * colour.dtype.itemsize), None
    if pixels.ndim == 3:
        if photometric != "RGB":
            try:
                pixels = convert_color_space(pixels, photometric, "RGB")
            except (NotImplementedError, ValueError):
                raise ImageInputError(
                    "unsupported", "the DICOM colour space is not supported"
                ) from None
        return _colour_to_uint8(pixels, _optional_int(ds.get("BitsStored")) or 8), None
    if geometry.bits_allocated == 1:
        grey, used = np.where(pixels != 0, np.uint8(255), np.uint8(0)), None
    else:
        grey, used = _window_grey(pixels, view, window)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey_to_rgb(grey), used


def _colour_to_uint8(colour: np.ndarray, bits: int) -> np.ndarray:
    if colour.dtype == np.uint8:
        return colour
    return scale_to_uint8(colour, 0, 2**bits - 1)


def _window_grey(
    pixels: np.ndarray, view: Dataset, override: Window | None
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Modality LUT, then the user's window, the file's window, its VOI LUT, or min..max."""
    values = apply_modality_lut(pixels, view)
    chosen = override or _file_window(view)
    if chosen is not None:
        params = Dataset()
        params.PhotometricInterpretation = "MONOCHROME2"
        params.PixelRepresentation = 0
        params.BitsStored = 8  # output range 0..255
        params.WindowCenter = chosen.center
        params.WindowWidth = chosen.width
        params.VOILUTFunction = _voi_function(view, chosen.width)
        used = (float(chosen.center), float(chosen.width))
        return scale_to_uint8(apply_windowing(values, params), 0, 255), used
    if view.get("VOILUTSequence"):
        values = apply_voi(values, view)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return np.zeros(values.shape, dtype=np.uint8), None
    return scale_to_uint8(values, float(finite.min()), float(finite.max())), None


def _file_window(view: Dataset) -> Window | None:
    """The first window stored for the frame, if it is valid."""
    try:
        center, width = (
            _first_float(view.get(keyword)) for keyword in ("WindowCenter", "WindowWidth")
        )
    except (TypeError, ValueError, IndexError):
        return None
    return (
        Window(center, width)
        if math.isfinite(center) and math.isfinite(width) and width > 0
        else None
    )


def _first_float(value: object) -> float:
    return float(value[0] if isinstance(value, MultiValue | list) else value)  # type: ignore[index, arg-type]


def _voi_function(view: Dataset, width: float) -> str:
    function = str(view.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    function = function if function in _VOI_FUNCTIONS else "LINEAR"
    # LINEAR needs a width of at least 1 (PS3.3 C.11.2.1.2.1); narrower ones are exact.
    return "LINEAR_EXACT" if function == "LINEAR" and width < 1 else function


def _pixel_spacing(view: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            spacing = tuple(float(v) for v in view.get(keyword) or ())
        except (TypeError, ValueError):
            continue
        if len(spacing) == 2 and all(math.isfinite(v) and v > 0 for v in spacing):
            return (spacing[0], spacing[1])
    return None


def _code_string(value: object) -> str | None:
    """A DICOM code string (e.g. Modality), or None when absent or not a plain code."""
    text = str(value).strip().upper() if value is not None else ""
    return text if _CODE_STRING.fullmatch(text) else None


def _optional_int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
