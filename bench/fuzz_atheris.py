"""Coverage-guided fuzzing of ``imaging.load_image`` with atheris (optional; never run in CI).

    pip install atheris                      # a manylinux wheel; in no requirements file
    python bench/fuzz_atheris.py --seeds /tmp/medxai-fuzz -max_total_time=600
    python bench/fuzz_atheris.py /tmp/medxai-fuzz -atheris_runs=100000
    python bench/fuzz_atheris.py crash-<sha1>  # replay one saved input

``--seeds DIR`` first writes the well-formed seeds and the bad-input corpus of
``tests/reliability/corpus.py`` into DIR, which libFuzzer then uses as its corpus (it adds the
inputs that reach new code there). Other arguments are libFuzzer's. Any exception other than
``ImageInputError``, or a returned image that is not (H, W, 3) uint8, is a finding: libFuzzer
saves the input as ``crash-<sha1>`` in the working directory. Coverage is measured on the Python
code of ``imaging``, ``pydicom`` and Pillow's plugins (the C decoders are not instrumented).
The property-based fuzz that CI runs is ``tests/reliability/test_fuzz.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

with atheris.instrument_imports(include=["imaging", "pydicom", "PIL"]):
    from imaging import ImageInputError, load_image


def check_one_input(data: bytes) -> None:
    """Load ``data``: only ImageInputError may escape, and a result must be (H, W, 3) uint8."""
    try:
        rgb = load_image(data).rgb
    except ImageInputError:
        return
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise AssertionError(f"load_image returned {rgb.dtype} {rgb.shape}")


def write_seeds(folder: Path) -> None:
    """Write the fuzz seeds and every bad-input corpus file into ``folder``."""
    from tests.reliability.corpus import CASES, SEEDS

    folder.mkdir(parents=True, exist_ok=True)
    for name, build in SEEDS.items():
        (folder / f"seed-{name}").write_bytes(build())
    for case in CASES:
        (folder / f"case-{case.filename}").write_bytes(case.build())


def main(argv: list[str]) -> None:
    """Write the seeds if ``--seeds DIR`` is given, then hand the arguments to libFuzzer."""
    if "--seeds" in argv:
        at = argv.index("--seeds")
        folder = Path(argv[at + 1])
        write_seeds(folder)
        argv = [*argv[:at], str(folder), *argv[at + 2 :]]
    atheris.Setup(argv, check_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
