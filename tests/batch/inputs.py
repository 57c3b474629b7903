"""Inputs for the batch tests: a small study of real staged images with broken files beside
them, a capsule clip written with OpenCV, and a runner for the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
# One thread per process in every run, so a 1-process and a 2-process run use the same kernels.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
BROKEN = {"broken/truncated.jpg": "truncated", "broken/empty.png": "empty",
          "broken/notes.txt": "not an image"}


def capsule_frames(data: Path, n: int) -> list[Path]:
    """``n`` staged capsule frames, bleeding and non-bleeding alternating."""
    bleeding = sorted((data / "wce-bleeding" / "bleeding").glob("*.jpg"))
    normal = sorted((data / "wce-bleeding" / "non-bleeding").glob("*.jpg"))
    return [(bleeding if i % 2 == 0 else normal)[i // 2] for i in range(n)]


def make_study(root: Path, data: Path, frames: int = 6) -> Path:
    """``root/study``: capsule frames (some in a subfolder), one brain MRI, one chest X-ray,
    three broken files and a hidden one (skipped)."""
    study = root / "study"
    for i, frame in enumerate(capsule_frames(data, frames)):
        target = study / ("capsule" if i % 2 else "") / f"frame{i:02d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(frame.read_bytes())
    for name, folder in (("mri.jpg", "brain-tumor-mri/glioma"),
                         ("xray.jpg", "chest-xray-pneumonia/pneumonia")):
        (study / name).write_bytes(sorted((data / folder).glob("*.jpg"))[0].read_bytes())
    (study / "broken").mkdir()
    jpeg = capsule_frames(data, 1)[0].read_bytes()
    (study / "broken/truncated.jpg").write_bytes(jpeg[:len(jpeg) // 3])
    (study / "broken/empty.png").write_bytes(b"")
    (study / "broken/notes.txt").write_text("not an image\n")
    (study / ".DS_Store").write_bytes(b"\x00" * 64)
    return study


def write_clip(path: Path, frames: list[Path], fps: float = 5.0) -> Path:
    """An MPEG-4 video of ``frames`` (256 x 256 capsule images) written by OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (256, 256))
    assert writer.isOpened(), "OpenCV cannot write MPEG-4 here"
    for frame in frames:
        writer.write(cv2.imread(str(frame)))
    writer.release()
    return path


def read_clip(path: Path) -> list[np.ndarray]:
    """Every frame of a video, read one after another (RGB)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def run_cli(*args: str | Path, module: str = "models.batch", launcher: tuple[str, ...] = (),
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python [launcher] -m module args`` from the repository, one thread per process."""
    command = [sys.executable, *launcher, "-m", module, *map(str, args)]
    return subprocess.run(command, cwd=REPO, env={**os.environ, **SINGLE_THREAD},
                          capture_output=True, text=True, timeout=timeout)
