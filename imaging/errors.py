"""The one typed error raised for every unreadable or unacceptable input."""

from __future__ import annotations

import logging
import traceback

__all__ = ["ERROR_KINDS", "ImageInputError", "log_swallowed"]

ERROR_KINDS: tuple[str, ...] = (
    "empty",
    "truncated",
    "not_an_image",
    "unsupported",
    "too_large",
    "no_pixels",
    "missing_codec",
    "bad_option",
    "too_small",
    "bad_shape",
)


class ImageInputError(ValueError):
    """A file could not be turned into an image.

    ``kind`` is one of :data:`ERROR_KINDS`: ``empty``; ``truncated`` (cut short);
    ``not_an_image`` (unrecognised or damaged); ``unsupported`` (a known format
    or mode we refuse); ``too_large`` (bytes or pixels over :class:`Limits`);
    ``no_pixels`` (a DICOM without an image); ``missing_codec`` (a DICOM codec is
    not installed); ``bad_option`` (frame or window arguments); ``too_small``
    (a side under ``MIN_SIDE`` pixels); ``bad_shape`` (sides more than
    ``MAX_ASPECT`` times apart). ``message`` is a short sentence fit to show to
    a user. It never holds traceback text or header values.
    """

    def __init__(self, kind: str, message: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}; known: {', '.join(ERROR_KINDS)}")
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ImageInputError(kind={self.kind!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[type[ImageInputError], tuple[str, str]]:
        return type(self), (self.kind, self.message)


def log_swallowed(log: logging.Logger, exc: BaseException) -> None:
    """Log at DEBUG the type and traceback frames of ``exc``, mapped to an :class:`ImageInputError`.

    ``str(exc)`` is left out: decoder messages may quote header values or file names.
    """
    log.debug("decoder raised %s (message omitted: it may quote patient data)\n%s",
              type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)).rstrip())
