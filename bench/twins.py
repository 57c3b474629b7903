"""Near twins: does each shipped model's test figure rest on near-copies of its training images?

    python bench/twins.py [--modalities histology,mri] [--weights-dir DIR] [--write-cards]
                          [--threads 2] [--json] [--out bench/results/twins.json]

For each default model of a (modality, task) the card's data is decoded and split into its exact
test files and all other images as in ``bench/probe_baseline.py``. Each test image's nearest
other image is found by thumbnail correlation and in frozen ImageNet feature space, and the
model (deciding as the app decides) is scored on the half of the test images least like any of
them, the other half, and beside the two 1-nearest-neighbour classifiers
(:mod:`training.twins`). ``--write-cards`` stores the report in the card as
``metrics["twins"]`` (weights untouched). Prints a table, writes JSON.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    environment,
    measure_each,
    parse_model_bench,
    store_in_card,
    write_results,
)
from imaging.preprocess import kept_region  # noqa: E402
from models.card import ModelCard  # noqa: E402
from models.predict import decide  # noqa: E402
from models.registry import load_model  # noqa: E402
from training.data import card_data, decode_images, sha256_of_files, thumbnails  # noqa: E402
from training.evaluate import model_probabilities  # noqa: E402
from training.probe import PROBE_ARCH, probe_features  # noqa: E402
from training.twins import nearest, twin_report  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "twins.json"


def card_twins(folder: Path, card: ModelCard, threads: int, batch_size: int) -> dict[str, Any]:
    """Decode the card's data once and return the twin report of its test split."""
    start = time.perf_counter()
    paths, labels, is_test = card_data(card, ROOT)
    images = decode_images(paths, card.preprocessing, card.input_size, threads)
    test, others = np.flatnonzero(is_test), np.flatnonzero(~is_test)
    thumbs = thumbnails(images, kept_region(card.preprocessing, card.input_size))
    pixel_index, similarity = nearest(thumbs[test], thumbs[others])
    features = probe_features(images, batch_size)
    feature_index, _ = nearest(features[test], features[others])
    probs = model_probabilities(load_model(folder, device="cpu"), images[torch.from_numpy(test)])
    correct = decide(probs, card.decision_threshold) == labels[test]
    report = twin_report(labels[test], correct, similarity, labels[others][pixel_index],
                         labels[others][feature_index])
    return {**report, "test_sha256": sha256_of_files(card.split["test_files"]),
            "features": f"{PROBE_ARCH} ImageNet, frozen, 1280-d pooled, cosine",
            "pixels": "32x32 grey thumbnails over the pixels the preprocessing keeps, Pearson",
            "seconds": round(time.perf_counter() - start, 1)}


def _cell(share: dict[str, Any]) -> str:
    return "-" if share["accuracy"] is None else f"{share['accuracy']:.3f} ({share['n']})"


def main(argv: list[str] | None = None) -> int:
    """Measure each chosen model, print the table, write the JSON; 1 if nothing was measured."""
    args, chosen, models, skipped = parse_model_bench(argv, __doc__, RESULTS, stores="twins")

    rows: list[dict[str, Any]] = []
    for modality, task, card, twins in measure_each(
            models, args.weights_dir, skipped,
            lambda folder, card: card_twins(folder, card, args.threads, args.batch_size)):
        row = {"modality": modality, "task": task, "model": card.name, "twins": twins}
        if args.write_cards:
            row["card"] = store_in_card(modality, card, "twins", twins, args.weights_dir)
        rows.append(row)

    lines = [f"{'model':<18} {'test n':>6} {'median r':>8} {'copies':>6} {'model: all':>12} "
             f"{'less alike':>12} {'more alike':>12} {'1-NN pixels':>12} {'1-NN features':>13}"]
    for r in rows:
        t, m = r["twins"], r["twins"]["model"]
        lines.append(f"{r['model']:<18} {t['n']:>6} {t['similarity']['median']:>8.3f} "
                     f"{t['copies']:>6} {_cell(m['all']):>12} {_cell(m['less_alike_half']):>12} "
                     f"{_cell(m['more_alike_half']):>12} "
                     f"{_cell(t['nearest_neighbour']['pixels']):>12} "
                     f"{_cell(t['nearest_neighbour']['features']):>13}"
                     + (f"  ({r['card']})" if "card" in r else ""))
    lines += [f"{task} skipped: {why}" for task, why in skipped.items()]
    lines.append("accuracy (n); halves split at the median nearest-image thumbnail correlation r; "
                 "copies: test images with r > 0.95")
    summary = {"environment": environment(), "modalities": chosen, "models": rows,
               "skipped": skipped}
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
