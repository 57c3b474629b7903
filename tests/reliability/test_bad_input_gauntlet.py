"""Every corpus file through each way in: ``load_image``, the predict CLI and the Predict page.

A readable file must work everywhere; any other must be refused with one short message, and
nothing else (no traceback, no second error, no unbounded memory) may come out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imaging import ERROR_KINDS, load_image
from models.predict import main as predict_main
from tests.app.session import REPO, button, open_page, upload
from tests.imaging.builders import assert_rejected, noise_png
from tests.reliability.corpus import CASES, OK, Case

BY_NAME = {case.name: case for case in CASES}
# Run as real subprocesses (a torch import costs seconds each): one refused file that makes
# libtiff write to stderr, one readable file; the others go through the same ``main`` in-process.
SUBPROCESS_CASES = ("tiff damaged directory", "dicom MONOCHROME1")
BOMBS = [case.name for case in CASES if case.expected == "too_large" and "bomb" in case.name]


def _params(cases: tuple[Case, ...] | list[Case]) -> list[object]:
    return [pytest.param(case, id=case.name) for case in cases]


def test_the_corpus_reaches_every_outcome_a_file_can_cause() -> None:
    outcomes = {case.expected for case in CASES}
    assert outcomes == {OK, *ERROR_KINDS} - {"bad_option"}  # bad_option comes from arguments
    assert len({case.filename for case in CASES}) == len(CASES)
    assert set(SUBPROCESS_CASES) <= set(BY_NAME) and len(BOMBS) == 2


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every corpus file written under its own name."""
    folder = tmp_path_factory.mktemp("corpus")
    for case in CASES:
        (folder / case.filename).write_bytes(case.build())
    return folder


# --- load_image --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(CASES))
def test_load_image(case: Case) -> None:
    data = case.build()
    started = time.perf_counter()
    if case.readable:
        rgb = load_image(data, name=case.filename).rgb
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.size > 0
    else:
        error = assert_rejected(data, case.expected, name=case.filename)
        assert error.message.startswith(f"{case.filename}: ")
    assert time.perf_counter() - started < 5


def _decode_under_a_memory_cap(warm_up: Path, paths: list[Path]) -> dict[str, object]:
    """Load ``paths`` in a child (only ``imaging`` imported) whose address space is capped.

    The cap is the child's size after loading ``warm_up`` plus 256 MiB.
    """
    script = """
import json, resource, sys, tracemalloc
import numpy as np
from imaging import ImageInputError, load_image
warm_up, *paths = sys.argv[1:]
load_image(open(warm_up, "rb").read())
with open("/proc/self/status") as status:
    used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (used + 256 * 2**20, resource.RLIM_INFINITY))
try:
    np.ones(512 * 2**20, dtype=np.uint8)
    cap_enforced = False
except MemoryError:
    cap_enforced = True
results = {}
for path in paths:
    data = open(path, "rb").read()
    tracemalloc.start()
    try:
        load_image(data)
        result = {"kind": "ok", "message": ""}
    except ImageInputError as error:
        result = {"kind": error.kind, "message": error.message}
    result["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    results[path] = result
print(json.dumps({"cap_enforced": cap_enforced, "results": results}))
"""
    args = [sys.executable, "-c", script, str(warm_up), *map(str, paths)]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


def test_bombs_are_refused_in_bounded_memory(corpus_dir: Path) -> None:
    """A full decode would need gigabytes; the size is refused before any pixel buffer exists."""
    bombs = [corpus_dir / BY_NAME[name].filename for name in BOMBS]
    report = _decode_under_a_memory_cap(corpus_dir / BY_NAME["jpeg named .png"].filename, bombs)
    assert report["cap_enforced"], "the child could allocate past its cap: the test proves nothing"
    results = report["results"]
    assert set(results) == set(map(str, bombs))
    for path, result in results.items():
        assert result["kind"] == "too_large", (path, result)
        assert "memory" not in result["message"], "refused only after an allocation failed"
        assert result["peak_mb"] < 50, (path, result)


# --- the predict CLI ------------------------------------------------------------------------


def _cli_args(folder: Path, case: Case, weights: Path) -> list[str]:
    return [str(folder / case.filename), "--modality", "xray", "--weights-dir", str(weights)]


def _check_cli(case: Case, code: int, stdout: str, stderr: str) -> None:
    if case.readable:
        assert code == 0, stderr
        assert "not a diagnosis" in stdout and "error" not in stderr
        return
    assert (code, stdout) == (2, ""), stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {case.filename}: "), lines[0]


@pytest.mark.parametrize("case", _params([c for c in CASES if c.name not in SUBPROCESS_CASES]))
def test_cli_in_process(
    case: Case, corpus_dir: Path, tiny_registry: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Output is captured at the file descriptors: what C libraries print counts too."""
    code = predict_main(_cli_args(corpus_dir, case, tiny_registry))
    captured = capfd.readouterr()
    _check_cli(case, code, captured.out, captured.err)


@pytest.mark.slow
def test_cli_subprocess(corpus_dir: Path, tiny_registry: Path) -> None:
    """``python -m models.predict`` itself, the representative cases run side by side."""
    running = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "models.predict",
                *_cli_args(corpus_dir, BY_NAME[name], tiny_registry),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SUBPROCESS_CASES
    }
    for name, proc in running.items():
        stdout, stderr = proc.communicate(timeout=300)
        _check_cli(BY_NAME[name], proc.returncode, stdout, stderr)


# --- the Predict page -----------------------------------------------------------------------


@pytest.mark.slow
def test_predict_page_refuses_each_bad_file_once_and_stays_usable(
    monkeypatch: pytest.MonkeyPatch, tiny_registry: Path
) -> None:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tiny_registry))
    at = open_page("predict")
    for case in CASES:
        name = case.filename
        upload(at, name, case.build())
        assert not at.exception, (case.name, at.exception)
        if case.readable:
            assert not at.error, (case.name, [e.value for e in at.error])
            # the tiny registry has no router: a readable image without a DICOM tag asks
            assert (any(b.label == "Predict" for b in at.button)
                    or any("choose the modality" in w.value for w in at.warning)), case.name
        else:
            assert len(at.error) == 1, (case.name, [e.value for e in at.error])
            assert name in at.error[0].value, case.name
    upload(at, "scan.png", noise_png())
    at.selectbox(key="predict-modality").set_value("xray").run()
    button(at, "Predict").click().run()
    assert not at.exception and not at.error
    assert at.metric[0].value in ("normal", "pneumonia")
