"""Argument handling shared by the ``xai`` command lines (``xai.explain``, ``xai.localize``).

Bad input ends with exit code 2 and ONE line ``error: <message>`` on stderr (no usage dump, no
traceback), for argparse errors as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

__all__ = ["CliError", "OneLineParser", "fail", "parse_options"]


class CliError(Exception):
    """A user-facing problem: printed as ``error: <message>``, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one ``error: ...`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def fail(message: object) -> int:
    """Print ``error: <message>`` (first line only) to stderr; return exit code 2."""
    text = str(message).strip().splitlines()
    print(f"error: {text[0] if text else type(message).__name__}", file=sys.stderr)
    return 2


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
