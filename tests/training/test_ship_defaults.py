"""training/ship_defaults.sh: which commands it runs for a choice of models (Python stubbed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "training" / "ship_defaults.sh"


def _commands(tmp_path: Path, only: str) -> list[str]:
    """The Python command lines the script runs for ``ONLY=only``, one per call."""
    log = tmp_path / "calls.log"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    stub.chmod(0o755)
    env = {**os.environ, "PYTHON": str(stub), "ONLY": only, "MEDXAI_DATA": str(tmp_path / "data"),
           "CHECKPOINTS": str(tmp_path / "ckpt"), "RUNS": str(tmp_path / "runs")}
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, capture_output=True, timeout=60)
    return log.read_text().splitlines()


@pytest.mark.parametrize("only", ["xray-lite1", "colonoscopy-lite0"])
def test_a_shipped_model_is_followed_by_the_checks_its_card_carries(tmp_path: Path,
                                                                     only: str) -> None:
    calls = _commands(tmp_path, only)
    assert calls[0].startswith("-m training.train") and f"--out weights/{only}" in calls[0]
    assert calls[1:] == ["bench/probe_baseline.py --write-cards", "bench/twins.py --write-cards"]


def test_runs_for_measurement_only_leave_the_cards_alone(tmp_path: Path) -> None:
    calls = _commands(tmp_path, "mri-cross-testing colonoscopy-plain")
    assert len(calls) == 2 and all(c.startswith("-m training.train") for c in calls)
    assert all("--out weights/" not in c for c in calls)
