"""Argument handling shared by the command lines (``models.batch``, ``xai.explain``,
``xai.localize``); imports no torch, so ``--help`` answers at once.

Bad input ends with exit code 2 and ONE line ``error: <message>`` on stderr (no usage dump, no
traceback), for argparse errors as well.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["CliError", "OneLineParser", "fail"]


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
