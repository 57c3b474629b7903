"""Property-based fuzzing of ``load_image`` with mutated real images and DICOM files.

Each seed of :data:`tests.reliability.corpus.SEEDS` is mutated by bit flips, byte overwrites,
truncations, insertions, repeated spans and corrupted structure fields (PNG chunk lengths, JPEG
segment lengths, TIFF entry counts and offsets, DICOM element lengths); mutated PNGs may get
their CRCs fixed so the damage reaches the decoder. Only ``ImageInputError`` may escape, and
a returned image is (H, W, 3) uint8 of the size its metadata states.

Budget: ``MEDXAI_FUZZ_EXAMPLES`` examples per seed (default 100: 900 inputs, well under 30 s).
Runs are derandomised, so CI is reproducible; a longer local run, counts printed::

    MEDXAI_FUZZ_EXAMPLES=5000 python -m pytest tests/reliability/test_fuzz.py -rP
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from imaging import ERROR_KINDS, ImageInputError, load_image
from tests.imaging.builders import PNG_SIGNATURE
from tests.reliability.corpus import SEEDS

EXAMPLES = int(os.environ.get("MEDXAI_FUZZ_EXAMPLES", "100"))

ByteOrder = Literal["little", "big"]


# --- structure fields of each format ----------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """An integer in a file's structure (a length, count or offset): where, how wide, what order."""

    offset: int
    size: int
    byteorder: ByteOrder

    def read(self, data: bytes) -> int:
        return int.from_bytes(data[self.offset : self.offset + self.size], self.byteorder)

    def write(self, data: bytes, value: int) -> bytes:
        encoded = (value % 2 ** (8 * self.size)).to_bytes(self.size, self.byteorder)
        return data[: self.offset] + encoded + data[self.offset + self.size :]


def png_fields(data: bytes) -> list[Field]:
    """The length of every chunk."""
    fields, at = [], len(PNG_SIGNATURE)
    while at + 8 <= len(data):
        fields.append(Field(at, 4, "big"))
        at += 12 + fields[-1].read(data)
    return fields


_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})  # TEM, RSTn, SOI, EOI: no length


def jpeg_fields(data: bytes) -> list[Field]:
    """The length of every marker segment up to the first scan header."""
    fields, at = [], 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in _JPEG_STANDALONE:
            at += 2
            continue
        fields.append(Field(at + 2, 2, "big"))
        if marker == 0xDA:  # entropy-coded data follows
            break
        at += 2 + fields[-1].read(data)
    return fields


def tiff_fields(data: bytes) -> list[Field]:
    """Every IFD's entry count, and each entry's value count and value (or offset)."""
    order: ByteOrder = "little" if data[:2] == b"II" else "big"
    fields, ifd = [], Field(4, 4, order).read(data)
    while 0 < ifd <= len(data) - 2:
        entries = Field(ifd, 2, order)
        count = entries.read(data)
        fields.append(entries)
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            fields += [Field(entry + 4, 4, order), Field(entry + 8, 4, order)]
        ifd = Field(ifd + 2 + 12 * count, 4, order).read(data)
    return fields


def _element_lengths(ds: Dataset, implicit: bool, byteorder: ByteOrder) -> list[Field]:
    fields = []
    for element in ds.elements():
        if isinstance(element, RawDataElement):
            size = 4 if implicit or element.VR in EXPLICIT_VR_LENGTH_32 else 2
            fields.append(Field(element.value_tell - size, size, byteorder))
    return fields


def dicom_fields(data: bytes) -> list[Field]:
    """The length of every top-level element, file meta included."""
    ds = pydicom.dcmread(io.BytesIO(data))
    implicit, little = ds.original_encoding
    return [
        *_element_lengths(ds.file_meta, False, "little"),
        *_element_lengths(ds, bool(implicit), "little" if little else "big"),
    ]


FIELDS: dict[str, Callable[[bytes], list[Field]]] = {
    "png": png_fields,
    "jpeg": jpeg_fields,
    "tiff": tiff_fields,
    "dicom": dicom_fields,
}


def _format(seed: str) -> str:
    return seed.split("-")[0]


def fix_png_crcs(data: bytes) -> bytes:
    """Rewrite the CRC of every chunk that lies wholly inside ``data``."""
    fixed = bytearray(data)
    for field in png_fields(data):
        end = field.offset + 8 + field.read(data)
        if end + 4 <= len(data):
            fixed[end : end + 4] = struct.pack(">I", zlib.crc32(data[field.offset + 4 : end]))
    return bytes(fixed)


# --- mutations --------------------------------------------------------------------------------

Step = Callable[[bytes], bytes]


def flip_bit(data: bytes, at: int, bit: int) -> bytes:
    """Flip one bit of the byte at ``at`` (positions are taken modulo the length)."""
    at %= len(data)
    return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]


def splice(data: bytes, at: int, removed: int, inserted: bytes) -> bytes:
    """Replace ``removed`` bytes at ``at`` with ``inserted``: overwrite, insert or truncate."""
    at %= len(data)
    return data[:at] + inserted + data[at + removed :]


def repeat(data: bytes, at: int, length: int) -> bytes:
    """Repeat the ``length`` bytes starting at ``at``."""
    at %= len(data)
    return data[: at + length] + data[at:]


def edit_field(data: bytes, field: Field, value: int, relative: bool) -> bytes:
    """Set a structure field to ``value`` (or add ``value`` to it), if it is still there."""
    if field.offset + field.size > len(data):
        return data
    return field.write(data, value + (field.read(data) if relative else 0))


# Field values that parsers mishandle: zero, one, odd, sign and width boundaries.
_EDGE_VALUES = [0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF]


def _step(
    function: Callable[..., bytes], **arguments: st.SearchStrategy[object]
) -> st.SearchStrategy[Step]:
    return st.builds(functools.partial, st.just(function), **arguments)


def _overwrite(at: st.SearchStrategy[int]) -> st.SearchStrategy[Step]:
    return st.binary(min_size=1, max_size=8).flatmap(
        lambda new: _step(splice, at=at, removed=st.just(len(new)), inserted=st.just(new))
    )


def mutations(size: int, fields: list[Field]) -> st.SearchStrategy[list[Step]]:
    """One to four mutations of a ``size``-byte file with the given structure ``fields``."""
    at = st.integers(0, size - 1)
    field = st.sampled_from(fields)
    one = st.one_of(
        _step(flip_bit, at=at, bit=st.integers(0, 7)),
        _overwrite(at),
        _step(splice, at=at, removed=st.just(size), inserted=st.just(b"")),
        _step(splice, at=at, removed=st.just(0), inserted=st.binary(min_size=1, max_size=64)),
        _step(repeat, at=at, length=st.integers(1, 256)),
        _step(
            edit_field,
            field=field,
            value=st.sampled_from(_EDGE_VALUES) | st.integers(0, 2**32 - 1),
            relative=st.just(False),
        ),
        _step(
            edit_field, field=field, value=st.integers(-8, 8).filter(bool), relative=st.just(True)
        ),
    )
    return st.lists(one, min_size=1, max_size=4)


def _mutate(data: bytes, steps: list[Step]) -> bytes:
    for step in steps:
        if data:
            data = step(data)
    return data


def _check_load(data: bytes) -> None:
    """Only ImageInputError may escape; a returned image is sane."""
    try:
        loaded = load_image(data)
    except ImageInputError as error:
        assert error.kind in ERROR_KINDS
        assert error.message and "\n" not in error.message and len(error.message) < 300
        return
    rgb = loaded.rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size > 0
    assert (loaded.meta["height"], loaded.meta["width"]) == rgb.shape[:2]


@pytest.mark.parametrize("seed", SEEDS)
def test_mutated_seed_raises_only_image_input_error(
    seed: str, record_property: Callable[[str, object], None]
) -> None:
    original = SEEDS[seed]()
    fields = FIELDS[_format(seed)](original)
    assert len(fields) >= 3, "the structure walker found no fields: the seed or walker broke"
    is_png = _format(seed) == "png"
    runs = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        steps=mutations(len(original), fields),
        fix_crcs=st.booleans() if is_png else st.just(False),
    )
    def fuzz(steps: list[Step], fix_crcs: bool) -> None:
        nonlocal runs
        runs += 1
        mutated = _mutate(original, steps)
        if fix_crcs:
            mutated = fix_png_crcs(mutated)
        _check_load(mutated)

    fuzz()
    record_property("fuzz_examples", runs)
    print(f"fuzz {seed}: {runs} mutated inputs")
    assert runs >= EXAMPLES


def test_walkers_find_the_real_structure() -> None:
    """Guards the structure-aware mutations: the fields found are the real lengths."""
    png = SEEDS["png"]()
    assert [png[f.offset + 4 : f.offset + 8] for f in png_fields(png)][-1] == b"IEND"
    jpeg = SEEDS["jpeg"]()
    scan_length = jpeg_fields(jpeg)[-1]
    assert jpeg[scan_length.offset - 2 : scan_length.offset] == b"\xff\xda"
    tiff = SEEDS["tiff-lzw"]()
    assert tiff_fields(tiff)[0].read(tiff) == (len(tiff_fields(tiff)) - 1) // 2
    ct = SEEDS["dicom-explicit-le-ct"]()
    rows = pydicom.dcmread(io.BytesIO(ct)).get_item(0x00280010).value_tell
    assert Field(rows - 2, 2, "little") in dicom_fields(ct)
    assert fix_png_crcs(png[:-1] + b"\x00") == png
