"""The training-speed benchmark runs end to end on tiny random images."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "train_speed.py"


def test_train_speed_writes_json(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("train_speed", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "speed.json"
    assert module.main(["--arch", "resnet18", "--size", "32", "--batch", "4", "--steps", "2",
                        "--threads", "1", "--rounds", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["ratio"] > 0 and result["feature_cache_images_per_s"] > 0
    assert "ratio (target >= 0.90)" in capsys.readouterr().out
