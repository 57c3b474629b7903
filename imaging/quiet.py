"""Silencing process-wide output while images decode, shared by concurrent decodes.

Warning filters, logger levels and file descriptor 2 belong to the whole process (Python 3.11),
so a silence cannot be per thread. Instead of serialising the decodes, a :class:`SharedSilence`
is counted: the first decode to enter silences, the last to leave restores, and decodes in
between run in parallel (a short lock guards only the count). Output of other threads is
silenced while any decode runs, as it was under a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator

from PIL import Image

__all__ = ["LIBRARY_OUTPUT", "STDERR", "SharedSilence"]

Restore = Callable[[], None]


class SharedSilence:
    """A silence entered by many threads at once; ``silence()`` applies it and returns the
    function that restores what was there before."""

    def __init__(self, silence: Callable[[], Restore]) -> None:
        self._silence = silence
        self._lock = threading.Lock()
        self._users = 0
        self._restore: Restore | None = None

    @property
    def active(self) -> bool:
        """True while at least one caller is inside."""
        return self._users > 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._restore = self._silence()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._restore is not None:
                    restore, self._restore = self._restore, None
                    restore()


# pydicom's warnings, Pillow's DEBUG lines (TIFF tags, EXIF strings) may quote header values.
# A logger's level also governs its children (``PIL.TiffImagePlugin``, ``pydicom.pixels``),
# which ``Logger.disabled`` would not.
_QUIET_LOGGERS = tuple(logging.getLogger(name) for name in ("pydicom", "PIL"))


def _silence_libraries() -> Restore:
    """Ignore warnings (Pillow's decompression-bomb warning becomes an error) and raise the
    pydicom and Pillow loggers above CRITICAL."""
    caught = warnings.catch_warnings()
    caught.__enter__()
    warnings.simplefilter("ignore")
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    levels = [logger.level for logger in _QUIET_LOGGERS]
    for logger in _QUIET_LOGGERS:
        logger.setLevel(logging.CRITICAL + 1)

    def restore() -> None:
        for logger, level in zip(_QUIET_LOGGERS, levels, strict=True):
            logger.setLevel(level)
        caught.__exit__(None, None, None)

    return restore


def _silence_stderr() -> Restore:
    """Point file descriptor 2 at the null device (libtiff prints a damaged file's complaints
    straight to it, bypassing Python)."""
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        return lambda: None
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)

    def restore() -> None:
        os.dup2(saved, 2)
        os.close(saved)

    return restore


LIBRARY_OUTPUT = SharedSilence(_silence_libraries)
"""Warnings and the pydicom / Pillow loggers, silenced around every decode."""
STDERR = SharedSilence(_silence_stderr)
"""File descriptor 2, silenced around TIFF decodes."""
