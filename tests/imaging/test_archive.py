"""Worklist uploads: zip archives unpacked in memory, base names only, bombs and damage refused."""

from __future__ import annotations

import zipfile

import pytest

from imaging import ImageInputError, Limits, load_image
from imaging.archive import base_name, expand_uploads
from tests.imaging.builders import noise_png, zip_bytes


def test_archives_are_replaced_by_their_images_with_base_names() -> None:
    png = noise_png()
    archive = zip_bytes({"study/series 1/IM0001": png, "study/series 1/IM0002.png": png,
                    "study/": b"", "__MACOSX/study/._IM0001": b"junk", "study/.DS_Store": b"x"})
    files, problems = expand_uploads([("C:\\exports\\first.png", png), ("study.zip", archive)])
    assert [f.name for f in files] == ["first.png", "IM0001", "IM0002.png"]
    assert problems == [] and all(f.data == png for f in files)
    assert load_image(files[1].data).rgb.shape[2] == 3


def test_damaged_empty_and_partly_unreadable_archives_are_reported() -> None:
    good = zip_bytes({"a.png": noise_png()})
    files, problems = expand_uploads([("cut.zip", good[:-30]), ("empty.zip", zip_bytes({})),
                                      ("fine.png", noise_png())])
    assert [f.name for f in files] == ["fine.png"]
    assert problems == ["cut.zip: the zip archive is damaged and cannot be opened",
                        "empty.zip: the zip archive holds no file"]
    big = zip_bytes({"small.png": noise_png(), "huge.bin": b"\0" * 50_000})
    files, problems = expand_uploads([("mixed.zip", big)],
                                     limits=Limits(max_bytes=30_000, max_pixels=10**6))
    assert [f.name for f in files] == ["small.png"]
    assert problems == ["mixed.zip: 1 of 2 files in the archive could not be read (damaged, "
                        "encrypted or too large)"]


def test_a_member_that_inflates_beyond_its_declared_size_is_stopped() -> None:
    """A zip bomb lies about sizes in its directory: the read stops one byte past the claim."""
    archive = bytearray(zip_bytes({"bomb.png": b"\0" * 100_000}))
    directory = archive.rindex(b"PK\x01\x02")  # the central directory entry
    archive[directory + 24:directory + 28] = (1000).to_bytes(4, "little")  # claims 1000 bytes
    local = archive.index(b"PK\x03\x04")
    archive[local + 22:local + 26] = (1000).to_bytes(4, "little")
    files, problems = expand_uploads([("bomb.zip", bytes(archive))])
    assert files == [] and "could not be read" in problems[0]


def test_too_many_files_and_nested_archives() -> None:
    png = noise_png()
    with pytest.raises(ImageInputError, match="more than 3 files"):
        expand_uploads([(f"{i}.png", png) for i in range(4)], max_files=3)
    files, problems = expand_uploads([("many.zip", zip_bytes({f"{i}.png": png for i in range(5)}))],
                                     max_files=3)
    assert files == [] and problems == ["many.zip: more than 3 files in the archive"]
    nested = zip_bytes({"inner.zip": zip_bytes({"a.png": png})}, zipfile.ZIP_STORED)
    files, _ = expand_uploads([("outer.zip", nested)])
    with pytest.raises(ImageInputError, match="ZIP archive"):  # passed on, refused by the reader
        load_image(files[0].data, name=files[0].name)


@pytest.mark.parametrize(("name", "expected"), [
    ("a/b/c.dcm", "c.dcm"), ("C:\\PACS\\export\\IM1", "IM1"), ("dir/", "dir"),
    ("x\x00\ny.png", "xy.png"), ("", "unnamed")])
def test_base_name(name: str, expected: str) -> None:
    assert base_name(name) == expected
