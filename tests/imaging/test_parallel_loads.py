"""Loads run in parallel; the process-wide silence around them is shared and always undone."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import imaging.loader
from imaging import ImageInputError, load_image
from imaging.quiet import LIBRARY_OUTPUT, SharedSilence
from tests.imaging.builders import encode

QUIET = logging.CRITICAL + 1


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


def _tiff(seed: int, damaged: bool) -> bytes:
    """A deflate TIFF; ``damaged``: its compressed strip overwritten (libtiff complains on fd 2)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(pixels), "TIFF", compression="tiff_adobe_deflate"))
    if damaged:
        data[60:100] = b"\xff" * 40
    return bytes(data)


def test_two_loads_are_inside_the_decoders_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each load waits inside the decoder for the other: under one process-wide lock the
    barrier would break and both loads fail."""
    files = [_png(0), _png(1)]
    expected = [load_image(data).rgb for data in files]
    both_inside = threading.Barrier(2, timeout=20)
    decode = imaging.loader._dispatch

    def meeting_decode(*args, **kwargs):
        both_inside.wait()
        return decode(*args, **kwargs)

    monkeypatch.setattr(imaging.loader, "_dispatch", meeting_decode)
    with ThreadPoolExecutor(2) as pool:
        images = list(pool.map(load_image, files))
    for image, pixels in zip(images, expected, strict=True):
        assert np.array_equal(image.rgb, pixels)  # each got its own pixels


def test_the_silence_lasts_until_the_last_user_leaves() -> None:
    pil = logging.getLogger("PIL")
    level, filters = pil.level, list(warnings.filters)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def first() -> None:
        with LIBRARY_OUTPUT():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with LIBRARY_OUTPUT():
            second_in.set()
            first_out.wait(10)
            seen["after the first left"] = pil.level

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == {"after the first left": QUIET}
    assert pil.level == level and warnings.filters == filters
    assert not LIBRARY_OUTPUT.active


def test_a_failing_load_among_parallel_ones_restores_everything() -> None:
    pil, pydicom_log = logging.getLogger("PIL"), logging.getLogger("pydicom")
    levels = (pil.level, pydicom_log.level)
    stderr = os.fstat(2)
    files = [_tiff(i, damaged=i // 2 % 3 == 0) if i % 2 else _png(i) for i in range(24)]
    files += [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40] * 4

    def attempt(data: bytes) -> str:
        try:
            load_image(data)
        except ImageInputError as exc:
            return exc.kind
        return "ok"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(attempt, files))
    assert outcomes.count("ok") == 20 and outcomes.count("not_an_image") == 8
    assert (pil.level, pydicom_log.level) == levels
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (stderr.st_dev, stderr.st_ino)


def test_shared_silence_counts_its_users() -> None:
    calls: list[str] = []

    def silence():
        calls.append("silence")
        return lambda: calls.append("restore")

    shared = SharedSilence(silence)
    with shared():
        with shared():
            assert shared.active
        assert calls == ["silence"]
    assert calls == ["silence", "restore"] and not shared.active
