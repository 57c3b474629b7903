"""bench/load.py end to end on tiny registered models: its JSON adds up and nothing fails."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import register_tiny_model

BENCH = Path(__file__).resolve().parents[2] / "bench" / "load.py"
XRAY_SET = "chest-xray-pneumonia"


@pytest.fixture(scope="module")
def load_bench() -> Iterator[ModuleType]:
    """bench/load.py as a module (registered while in use: its dataclasses need that)."""
    spec = importlib.util.spec_from_file_location("load_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def check_summary(result: dict, requests: int, sessions: int, rounds: int) -> None:
    """Both modes served every request once a round, without error; the figures are consistent."""
    assert result["rounds"] == rounds
    for mode, threads in (("sequential", 1), ("concurrent", sessions)):
        run = result[mode]
        assert (run["sessions"], run["requests"], run["completed"], run["errors"]) == (
            threads, requests, requests, 0)
        assert run["errors_all_rounds"] == 0 and len(run["throughput_rps_rounds"]) == rounds
        assert run["throughput_rps"] == max(run["throughput_rps_rounds"])
        assert len(run["per_session"]) == threads and sum(run["per_session"]) == requests
        assert run["throughput_rps"] == pytest.approx(requests / run["wall_s"])
        latency = run["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]
        assert latency["max"] <= run["wall_s"] * 1000
    assert result["concurrency_ratio"] == pytest.approx(
        result["concurrent"]["throughput_rps"] / result["sequential"]["throughput_rps"])
    assert result["mismatches"] == 0 and result["max_abs_diff_vs_sequential"] <= 1e-5
    assert result["error_messages"] == []


def test_generated_images_when_there_is_no_data(load_bench: ModuleType, tiny_registry: Path,
                                                tmp_path: Path, capsys) -> None:
    out = tmp_path / "load.json"
    assert load_bench.main(["--weights-dir", str(tiny_registry), "--modality", "mri",
                            "--sessions", "3", "--requests", "7", "--rounds", "2",
                            "--methods", "gradcam,stages", "--data", str(tmp_path / "absent"),
                            "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    check_summary(result, requests=7, sessions=3, rounds=2)
    assert result["model"] == "tiny-mri-resnet18"
    assert result["methods"] == ["gradcam", "gradcam_stage3", "gradcam_stage4", "gradcam_fused"]
    assert result["images"] == {"source": "generated", "count": 7}
    printed = capsys.readouterr().out
    assert "using 7 generated images" in printed and "best of 2 interleaved rounds" in printed


def test_real_images_from_the_cards_test_split(load_bench: ModuleType, shared_data: Path,
                                               tmp_path: Path) -> None:
    folder = shared_data / XRAY_SET
    files = [f"{label}/{path.name}" for label in ("normal", "pneumonia")
             for path in sorted((folder / label).glob("*.jpg"))[:3]]
    card = register_tiny_model(tmp_path / "weights", "xray", split={"test_files": files},
                               data={"name": "test", "source": f"../shared/data/{XRAY_SET}"})
    # Spread evenly over the split (so over both classes); a CSV source means its folder.
    spread = [folder / files[0], folder / files[3]]
    assert load_bench.card_test_images(card, shared_data, 2) == spread
    in_csv = replace(card, data={"source": f"../shared/data/{XRAY_SET}/SOURCES.csv"})
    assert load_bench.card_test_images(in_csv, shared_data, 2) == spread
    assert load_bench.card_test_images(card, None, 2) == []

    out = tmp_path / "load.json"
    assert load_bench.main(["--weights-dir", str(tmp_path / "weights"), "--modality", "xray",
                            "--sessions", "2", "--requests", "4", "--rounds", "1",
                            "--data", str(shared_data), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    check_summary(result, requests=4, sessions=2, rounds=1)
    assert result["images"]["count"] == 4 and result["images"]["source"].startswith("test split")
    assert result["methods"] == ["gradcam", "hirescam", "haycam_plus"]
