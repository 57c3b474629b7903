"""DICOM decoding: every staged real file, pydicom's bundled files, and crafted edge cases."""

from __future__ import annotations

import csv
import io
import logging
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID

from imaging import ImageInputError, LoadedImage, Window, load_image, load_path
from tests.conftest import SHARED_DATA_HINT, shared_data_root
from tests.imaging.builders import bundled_dicom, dicom_bytes

# Independent of imaging.modality, on purpose.
EXPECTED_SUGGESTION = {"MR": "mri", "CR": "xray", "DX": "xray"}
# The staged negative cases and the kind each must raise.
NEGATIVE_KINDS = {
    "MR_truncated.dcm": "truncated",
    "no_meta.dcm": "not_an_image",
    "rtplan.dcm": "no_pixels",
    "liver_deflate.dcm": "missing_codec",
}
META_KEYS = {
    "format",
    "width",
    "height",
    "modality",
    "body_part",
    "pixel_spacing",
    "frame_count",
    "frame",
    "photometric",
    "transfer_syntax",
    "bits_stored",
    "window",
}


def _sources() -> list[dict[str, str]]:
    root = shared_data_root()
    csv_path = root / "dicom" / "SOURCES.csv" if root else None
    if csv_path is None or not csv_path.is_file():
        return []
    with csv_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


SOURCES = _sources()


def _rows(negative: bool) -> list[object]:
    rows = [row for row in SOURCES if (row["file"] in NEGATIVE_KINDS) == negative]
    if not rows:
        return [pytest.param(None, marks=pytest.mark.skip(reason=SHARED_DATA_HINT))]
    return [pytest.param(row, id=row["file"]) for row in rows]


def _check_decoded(
    loaded: LoadedImage, *, rows: int, columns: int, frames: int, modality: str | None
) -> None:
    rgb = loaded.rgb
    assert rgb.shape == (rows, columns, 3)
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert rgb.std() > 0, "decoded to a flat image"
    assert set(loaded.meta) == META_KEYS
    assert loaded.meta["format"] == "dicom"
    assert (loaded.meta["width"], loaded.meta["height"]) == (columns, rows)
    assert loaded.meta["modality"] == modality
    assert loaded.meta["frame_count"] == frames
    assert loaded.meta["frame"] == frames // 2
    assert loaded.suggested_modality == EXPECTED_SUGGESTION.get(modality or "")


def _shared_dicom(name: str) -> Path:
    root = shared_data_root()
    path = root / "dicom" / name if root else None
    if path is None or not path.is_file():
        pytest.skip(SHARED_DATA_HINT)
    return path


# --- staged real files -------------------------------------------------------------------


def test_negative_list_matches_sources_csv() -> None:
    if not SOURCES:
        pytest.skip(SHARED_DATA_HINT)
    marked = {
        row["file"]
        for row in SOURCES
        if row["pixel_decoder_needed"].startswith("EXPECTED FAILURE")
        or row["notes"].startswith("NEGATIVE TEST")
    }
    assert marked == set(NEGATIVE_KINDS)
    assert len(SOURCES) - len(marked) == 31


@pytest.mark.parametrize("row", _rows(negative=False))
def test_staged_dicom_decodes(row: dict[str, str], shared_data: Path) -> None:
    loaded = load_path(shared_data / "dicom" / row["file"])
    _check_decoded(
        loaded,
        rows=int(row["Rows"]),
        columns=int(row["Columns"]),
        frames=int(row["NumberOfFrames"] or 1),
        modality=row["Modality"] or None,
    )
    assert loaded.meta["photometric"] == row["PhotometricInterpretation"]
    assert loaded.meta["transfer_syntax"] == row["TransferSyntaxName"]


@pytest.mark.parametrize("row", _rows(negative=True))
def test_staged_negative_dicom_raises(row: dict[str, str], shared_data: Path) -> None:
    with pytest.raises(ImageInputError) as caught:
        load_path(shared_data / "dicom" / row["file"])
    assert caught.value.kind == NEGATIVE_KINDS[row["file"]]
    assert caught.value.message.startswith(f"{row['file']}: ")


def test_missing_codec_names_the_transfer_syntax() -> None:
    with pytest.raises(ImageInputError) as caught:
        load_path(_shared_dicom("liver_deflate.dcm"))
    assert caught.value.kind == "missing_codec"
    assert "Deflated Image Frame Compression" in caught.value.message
    assert "no decoder exists" in caught.value.message


def _raw_pixels(path: Path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array.astype(np.float64)


@pytest.mark.parametrize("name", ["RG1_J2KI.dcm", "RG3_J2KR.dcm", "dx_image.dcm"])
def test_monochrome1_is_inverted(name: str) -> None:
    path = _shared_dicom(name)
    raw = _raw_pixels(path)[::4, ::4]
    shown = load_path(path).rgb[::4, ::4, 0].astype(np.float64)
    # MONOCHROME1: the lowest stored value is the brightest on screen.
    assert shown[raw == raw.min()].mean() > shown[raw == raw.max()].mean()
    assert np.corrcoef(raw.ravel(), shown.ravel())[0, 1] < -0.5


def test_monochrome2_is_not_inverted() -> None:
    path = bundled_dicom("CT_small.dcm")
    raw = _raw_pixels(path)
    shown = load_path(path).rgb[:, :, 0].astype(np.float64)
    assert np.corrcoef(raw.ravel(), shown.ravel())[0, 1] > 0.9


MULTI_FRAME = [
    pytest.param("shared", "emri_small.dcm", id="emri_small"),
    pytest.param("bundled", "examples_ybr_color.dcm", id="examples_ybr_color"),
]


@pytest.mark.parametrize(("where", "name"), MULTI_FRAME)
def test_frame_selection(where: str, name: str) -> None:
    path = _shared_dicom(name) if where == "shared" else bundled_dicom(name)
    default = load_path(path)
    count = int(default.meta["frame_count"])  # type: ignore[call-overload]
    assert count > 2
    assert default.meta["frame"] == count // 2
    first, last = load_path(path, frame=0), load_path(path, frame=count - 1)
    assert (first.meta["frame"], last.meta["frame"]) == (0, count - 1)
    assert not np.array_equal(first.rgb, last.rgb)
    assert np.array_equal(load_path(path, frame=count // 2).rgb, default.rgb)
    for bad in (count, -1):
        with pytest.raises(ImageInputError) as caught:
            load_path(path, frame=bad)
        assert caught.value.kind == "bad_option"


@pytest.mark.parametrize("where", ["shared", "bundled"])
def test_ybr_becomes_plausible_rgb(where: str) -> None:
    """A grey echo with colour markers: stored as YBR it would look tinted if not converted."""
    name = "examples_ybr_color.dcm"
    path = _shared_dicom(name) if where == "shared" else bundled_dicom(name)
    loaded = load_path(path)
    index = int(loaded.meta["frame"])  # type: ignore[call-overload]
    assert loaded.meta["photometric"] == "YBR_FULL_422"
    rgb = loaded.rgb.astype(np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    assert np.median(spread) < 10, "grey regions must stay grey"
    assert (spread > 40).any(), "the colour markers must be coloured"
    ybr = pydicom.pixels.pixel_array(path, index=index, as_rgb=False).astype(np.int16)
    assert np.abs(rgb - ybr).mean() > 50, "the YBR values were not converted"
    expected = pydicom.pixels.pixel_array(path, index=index).astype(np.int16)
    assert np.abs(rgb - expected).max() <= 1


# --- bundled pydicom files: the same checks without the shared data ---------------------

BUNDLED_IMAGES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEG2000.dcm",
    "JPGExtended.dcm",
    "ExplVR_BigEnd.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_rle_32bit.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_ybr_color.dcm",
    "examples_palette.dcm",
    "liver_1frame.dcm",
    "image_dfl.dcm",
]
BUNDLED_NEGATIVE = {
    "MR_truncated.dcm": "truncated",
    "no_meta.dcm": "not_an_image",
    "rtplan.dcm": "no_pixels",
    "ExplVR_LitEndNoMeta.dcm": "no_pixels",
    "dicomdirtests/DICOMDIR": "no_pixels",
    "zipMR.gz": "unsupported",
    "rtdose.dcm": "too_small",  # a 10 x 10 dose grid, not an image to classify
}


@pytest.mark.parametrize("name", BUNDLED_IMAGES)
def test_bundled_dicom_decodes(name: str) -> None:
    path = bundled_dicom(name)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    _check_decoded(
        load_path(path),
        rows=int(header.Rows),
        columns=int(header.Columns),
        frames=int(header.get("NumberOfFrames") or 1),
        modality=header.get("Modality") or None,
    )


@pytest.mark.parametrize(("name", "kind"), BUNDLED_NEGATIVE.items())
def test_bundled_negative_raises(name: str, kind: str) -> None:
    with pytest.raises(ImageInputError) as caught:
        load_path(bundled_dicom(name))
    assert caught.value.kind == kind


def test_bare_data_set_without_preamble_decodes() -> None:
    ds = pydicom.dcmread(bundled_dicom("CT_small.dcm"))
    del ds.file_meta
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=False, little_endian=True)
    data = buffer.getvalue()
    assert data[128:132] != b"DICM"
    loaded = load_image(data)
    assert loaded.rgb.shape == (128, 128, 3)
    assert loaded.meta["modality"] == "CT"


def test_one_bit_segmentation_is_0_or_255() -> None:
    loaded = load_path(bundled_dicom("liver_1frame.dcm"))
    assert set(np.unique(loaded.rgb)) == {0, 255}


def test_palette_colour_is_applied() -> None:
    rgb = load_path(bundled_dicom("examples_palette.dcm")).rgb.astype(np.int16)
    assert (rgb.max(axis=2) - rgb.min(axis=2)).max() > 100


# --- windowing ------------------------------------------------------------------------------


def test_file_window_is_used_and_reported() -> None:
    loaded = load_path(bundled_dicom("MR_small.dcm"))
    assert loaded.meta["window"] == (600.0, 1600.0)


def test_no_window_uses_min_max() -> None:
    loaded = load_path(bundled_dicom("CT_small.dcm"))
    assert loaded.meta["window"] is None
    assert loaded.rgb.min() == 0 and loaded.rgb.max() == 255


def test_window_override_changes_output() -> None:
    path = bundled_dicom("MR_small.dcm")
    stored = load_path(path)
    narrow = load_path(path, window=Window(center=600, width=200))
    assert narrow.meta["window"] == (600.0, 200.0)
    assert not np.array_equal(stored.rgb, narrow.rgb)
    saturated = np.isin(narrow.rgb, (0, 255)).mean()
    assert saturated > np.isin(stored.rgb, (0, 255)).mean()


def test_window_fields_may_be_numeric_strings() -> None:
    loaded = load_path(bundled_dicom("MR_small.dcm"), window=Window("600", "200"))  # type: ignore[arg-type]
    assert loaded.meta["window"] == (600.0, 200.0)


def test_window_override_follows_the_dicom_linear_formula() -> None:
    """CT_small: HU = stored - 1024; LINEAR window per PS3.3 C.11.2.1.2.1."""
    path = bundled_dicom("CT_small.dcm")
    center, width = 40.0, 400.0
    hu = _raw_pixels(path) - 1024
    expected = np.clip(((hu - (center - 0.5)) / (width - 1) + 0.5) * 255, 0, 255)
    shown = load_path(path, window=Window(center, width)).rgb[:, :, 0]
    assert np.abs(shown - expected).max() <= 1


@pytest.mark.parametrize(
    "window",
    [Window(0, 0), Window(10, -5), Window(float("nan"), 10), Window("c", 10), (40, 400)],  # type: ignore[arg-type]
)
def test_invalid_window_is_bad_option(window: Window) -> None:
    with pytest.raises(ImageInputError) as caught:
        load_path(bundled_dicom("MR_small.dcm"), window=window)
    assert caught.value.kind == "bad_option"


# --- de-identification ----------------------------------------------------------------------

IDENTIFIERS = {
    "PatientName": "Zyxwvut^Qponm",
    "PatientID": "PID-86420-XQ",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "ACC-97531",
    "InstitutionName": "Unique Test Hospital Qwerty",
    "ReferringPhysicianName": "Referrer^Uniquely",
    "StudyDate": "20011122",
    "StudyInstanceUID": "1.2.826.0.1.3680043.99.424242",
}


def _with_identifiers(ds: Dataset) -> None:
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)


def test_meta_holds_no_patient_data(capfd: pytest.CaptureFixture[str]) -> None:
    loaded = load_image(dicom_bytes("CT_small.dcm", _with_identifiers), name="scan.dcm")
    assert set(loaded.meta) == META_KEYS
    text = repr(loaded.meta) + repr(loaded) + " ".join(map(str, loaded.meta.values()))
    printed = "".join(capfd.readouterr())
    for value in IDENTIFIERS.values():
        assert value not in text
        assert value not in printed


def test_errors_hold_no_patient_data(capfd: pytest.CaptureFixture[str]) -> None:
    def damage(ds: Dataset) -> None:
        _with_identifiers(ds)
        ds.PixelData = ds.PixelData[:100]

    with pytest.raises(ImageInputError) as caught:
        load_image(dicom_bytes("CT_small.dcm", damage))
    assert caught.value.kind == "truncated"
    printed = "".join(capfd.readouterr())
    for value in IDENTIFIERS.values():
        assert value not in caught.value.message
        assert value not in printed
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_image_cut_before_its_size_is_truncated_not_a_report() -> None:
    data = bundled_dicom("CT_small.dcm").read_bytes()
    cut = data.index(b"\x28\x00\x10\x00US")  # (0028,0010) Rows, explicit VR little endian
    with pytest.raises(ImageInputError) as caught:
        load_image(data[:cut])
    assert caught.value.kind == "truncated"


def test_library_warnings_and_logs_are_silenced(caplog: pytest.LogCaptureFixture) -> None:
    """Compressed pixel data cut short makes pydicom warn and log; none of it may leak out."""
    data = bundled_dicom("MR_small_jp2klossless.dcm").read_bytes()
    cut = data.index(b"\xe0\x7f\x10\x00") + 100  # 100 bytes into (7FE0,0010) Pixel Data
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageInputError) as error:
            load_image(data[:cut])
    assert error.value.kind == "truncated"
    assert caught == []
    assert caplog.records == []


# --- crafted hostile headers ----------------------------------------------------------------


def _peak_megabytes(data: bytes) -> tuple[str, float]:
    tracemalloc.start()
    try:
        with pytest.raises(ImageInputError) as caught:
            load_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return caught.value.kind, peak / 2**20


def test_huge_declared_size_fails_before_allocation() -> None:
    def enlarge(ds: Dataset) -> None:
        ds.Rows, ds.Columns = 60000, 60000

    kind, peak = _peak_megabytes(dicom_bytes("CT_small.dcm", enlarge))
    assert kind == "too_large"
    assert peak < 20


def test_many_declared_frames_fail_before_allocation() -> None:
    def multiply(ds: Dataset) -> None:
        ds.NumberOfFrames = 100_000

    kind, peak = _peak_megabytes(dicom_bytes("MR_small.dcm", multiply))
    assert kind == "too_large"
    assert peak < 20


def test_short_pixel_data_under_the_limit_is_truncated_before_allocation() -> None:
    def enlarge(ds: Dataset) -> None:
        ds.Rows, ds.Columns = 5000, 5000  # 25 Mpx, 50 MB declared; ~32 kB present

    kind, peak = _peak_megabytes(dicom_bytes("CT_small.dcm", enlarge))
    assert kind == "truncated"
    assert peak < 20


def test_compressed_huge_declared_size_is_too_large() -> None:
    def enlarge(ds: Dataset) -> None:
        ds.Rows, ds.Columns = 30000, 30000

    with pytest.raises(ImageInputError) as caught:
        load_image(dicom_bytes("JPEG2000.dcm", enlarge))
    assert caught.value.kind == "too_large"


def test_transfer_syntax_without_decoder_is_missing_codec() -> None:
    def relabel(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2 video

    with pytest.raises(ImageInputError) as caught:
        load_image(dicom_bytes("JPEG2000.dcm", relabel))
    assert caught.value.kind == "missing_codec"
    assert "MPEG2" in caught.value.message
