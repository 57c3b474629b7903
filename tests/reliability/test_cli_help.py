"""Every command line answers ``--help`` without loading torch, timm or torchvision (seconds on a
CPU), lists its flags, and gives each of them help text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "timm", "torchvision")
# Runs one CLI's --help in a fresh interpreter, keeping the parser it built.
PROBE = """\
import argparse, contextlib, io, json, runpy, sys
parsers = []
parse_args = argparse.ArgumentParser.parse_args
def keep(parser, *args, **kwargs):
    parsers.append(parser)
    return parse_args(parser, *args, **kwargs)
argparse.ArgumentParser.parse_args = keep
sys.argv = [CLI, '--help']
with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:
    runpy.run_module(CLI, run_name='__main__', alter_sys=True)
print(json.dumps({'help': out.getvalue(), 'loaded': [m for m in HEAVY if m in sys.modules],
                  'no_help': [a.option_strings or a.dest for a in parsers[0]._actions if not a.help]}))
"""


@pytest.mark.parametrize(("cli", "flag"), [
    ("training.train", "--lr-warmup-epochs"), ("training.evaluate", "--split"),
    ("training.calibrate", "--no-test-time-crops"), ("training.trust", "--model"),
    ("training.crossval", "--json"), ("models.predict", "--window"),
    ("models.batch", "--explain-top"), ("xai.explain", "--cmap"), ("xai.localize", "--masks"),
])
def test_help_loads_no_torch_and_explains_every_flag(cli: str, flag: str) -> None:
    code = f"CLI = {cli!r}\nHEAVY = {HEAVY!r}\n{PROBE}"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert flag in answer["help"]
    assert answer["loaded"] == []
    assert answer["no_help"] == []
