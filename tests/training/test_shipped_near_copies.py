"""``training.evaluate --near-copies`` on the shipped capsule model's own test split agrees with
the near-copy report its card carries (``bench/twins.py``): two code paths, real frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.registry import ModelUnavailable, find_card
from training import evaluate

REPO = Path(__file__).resolve().parents[2]


def test_evaluate_finds_the_copies_the_card_records(shared_data: Path, monkeypatch, capsys) -> None:
    try:
        _, card = find_card("endoscopy", task="capsule-bleeding")
    except ModelUnavailable as exc:
        pytest.skip(f"no capsule model installed: {exc}")
    sources = [REPO / entry["source"] for entry in card.data["sources"]]
    if not all(source.is_dir() for source in sources):
        pytest.skip(f"the capsule model's data is not where its card says ({sources[0]})")
    monkeypatch.chdir(REPO)  # the card's sources are relative to the repository
    capsys.readouterr()
    assert evaluate.main(["--data", *map(str, sources), "--modality", "endoscopy", "--split",
                          "test", "--near-copies", "--json"]) == 0
    copies = json.loads(capsys.readouterr().out)["near_copies"]
    twins = card.metrics["twins"]
    assert copies["n"] == twins["n"] and copies["copies"] == twins["copies"] > 0
    assert copies["compared_with"] == sum(e["images"] for e in card.data["sources"]) - twins["n"]
    assert copies["without_copies"]["n"] == twins["model"]["without_copies"]["n"]
    assert copies["without_copies"]["accuracy"] == pytest.approx(
        twins["model"]["without_copies"]["accuracy"])
