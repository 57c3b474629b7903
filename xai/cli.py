"""Argument handling of the ``xai`` command lines (``xai.explain``, ``xai.localize``): the
one-line parser of :mod:`models.cli` and the ``--options`` JSON."""

from __future__ import annotations

import json

from models.cli import CliError, OneLineParser, fail

__all__ = ["CliError", "OneLineParser", "fail", "parse_options"]


def parse_options(text: str | None) -> dict[str, dict[str, object]]:
    """``--options`` JSON, e.g. ``{"dt_gradcam": {"n": 8}}``; ``CliError`` when malformed."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--options is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise CliError('--options must be a JSON object of objects, e.g. {"dt_gradcam": {"n": 8}}')
    return value
