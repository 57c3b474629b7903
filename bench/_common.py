"""What the benchmarks share: the machine description and writing / printing the results."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

__all__ = ["environment", "write_results"]


def environment() -> dict[str, object]:
    """Torch version, intra-op threads and CPU, for the results JSON."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}


def write_results(summary: dict[str, object], out: Path, table: str, print_json: bool) -> None:
    """Write ``summary`` as JSON to ``out``, print the table, the path and (if asked) the JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(table)
    print(f"written: {out}")
    if print_json:
        print(json.dumps(summary, indent=2))
