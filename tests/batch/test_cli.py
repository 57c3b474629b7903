"""``python -m models.batch`` as a user runs it: fast help, one-line errors, a run killed
midway and run again equals an uninterrupted run, and two torchrun processes equal one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from models.batch.__main__ import main
from tests.batch.inputs import REPO, SINGLE_THREAD, capsule_frames, run_cli

FRAMES = 24
ARGS = ("--rank-by", "bleeding", "--batch-size", "4", "--workers", "1", "--quiet")


@pytest.fixture(scope="module")
def frames(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames") / "study"
    folder.mkdir()
    for i, frame in enumerate(capsule_frames(shared_data, FRAMES)):
        (folder / f"frame{i:03d}.jpg").write_bytes(frame.read_bytes())
    return folder


@pytest.fixture(scope="module")
def uninterrupted(frames: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("uninterrupted")
    done = run_cli(frames, "--out", out, *ARGS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{FRAMES} images: ")
    assert "Research tool, not a diagnosis." in done.stdout
    return (out / "results.csv").read_text()


@pytest.mark.parametrize(("args", "words"), [
    (("missing-folder", "--out", "x"), "does not exist"),
    (("{frames}", "--out", "{out}", "--rank-by", "no-such-class"), "not a class"),
    (("{frames}", "--out", "{out}", "--explain-top", "3"), "needs --rank-by"),
    (("{frames}", "--out", "{out}", "--every", "0"), "--every must be 1 or more"),
    (("{frames}", "--out", "{out}", "--no-router"), "modality must be given"),
    (("{frames}", "--out", "{out}", "--rank-by", "bleeding", "--explain-top", "1",
      "--methods", "gradcam,nonsense"), "unknown method 'nonsense'"),
    (("{frames}",), "--out"),
])
def test_bad_input_is_one_error_line_and_exit_2(args: tuple[str, ...], words: str, frames: Path,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    with pytest.raises(SystemExit) if args == ("{frames}",) else nullcontext():
        code = main([a.format(frames=frames, out=tmp_path / "out") for a in args])
        assert code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert words in stderr
    assert not (tmp_path / "out" / "parts").exists()  # refused before any work


def test_a_run_killed_midway_and_run_again_equals_an_uninterrupted_run(
        frames: Path, uninterrupted: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "models.batch", str(frames), "--out", str(out), *ARGS]
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **SINGLE_THREAD},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    part = out / "parts" / "part-0.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if part.is_file() and part.read_bytes().count(b"\n") > 8:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the run and its decoding workers, mid-batch
    process.wait(timeout=60)
    journalled = part.read_bytes().count(b"\n") - 1
    assert 0 < journalled < FRAMES, "the run was not killed midway"
    with open(part, "ab") as handle:  # as if killed in the middle of writing a row
        handle.write(b"23,0,1,frame023.jpg,endoscopy,rou")
    again = run_cli(frames, "--out", out, *ARGS)
    assert again.returncode == 0, again.stderr
    assert (out / "results.csv").read_text() == uninterrupted


def test_two_torchrun_processes_give_the_rows_of_one(frames: Path, uninterrupted: str,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_cli(frames, "--out", out, *ARGS,
                   launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "results.csv").read_text() == uninterrupted
    shards = [{line.split(",")[0] for line in (out / "parts" / f"part-{rank}.csv").read_text()
               .splitlines()[1:]} for rank in (0, 1)]
    assert shards[0] and shards[1] and not shards[0] & shards[1]
    assert done.stdout.count("results:") == 1  # rank 0 merges and reports
