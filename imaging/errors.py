"""The one typed error raised for every unreadable or unacceptable input."""

from __future__ import annotations

__all__ = ["ERROR_KINDS", "ImageInputError"]

ERROR_KINDS: tuple[str, ...] = (
    "empty",
    "truncated",
    "not_an_image",
    "unsupported",
    "too_large",
    "no_pixels",
    "missing_codec",
    "bad_option",
)


class ImageInputError(ValueError):
    """A file could not be turned into an image.

    ``kind`` is one of :data:`ERROR_KINDS`; ``message`` is a short sentence fit
    to show to a user. It never holds traceback text or header values.
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
