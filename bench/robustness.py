"""Robustness to acquisition shifts: every shipped model and its linear probe on shifted test images.

    python bench/robustness.py [--modalities xray,mri] [--weights-dir DIR] [--split test|val]
                               [--threads 2] [--json] [--out bench/results/robustness.json]

For each default model of a (modality, task) the card's test split is decoded as in
``bench/probe_baseline.py``, the probe is fitted on all other images, and both are scored on the
test images (``--split val``: the validation split rebuilt from the card, the probe fitted on the
training split, to choose between models without the test split) as they are and under each shift of :data:`training.shift.SHIFTS` (sharper, softer,
lower resolution, wider aspect, more contrast, harsher JPEG). The staged sets each came through
one pipeline; a model that loses much more than the probe under a shift has learnt that pipeline,
and will do so on images from elsewhere. Prints balanced accuracy per shift and what the model's
errors turn into (the class that gains most false calls); writes JSON.
"""

from __future__ import annotations

import argparse
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
    write_results,
)
from models.card import ModelCard  # noqa: E402
from models.registry import load_model  # noqa: E402
from training.data import card_data, decode_images  # noqa: E402
from training.evaluate import model_probabilities  # noqa: E402
from training.metrics import classification_report  # noqa: E402
from training.probe import fit_probe, probe_features  # noqa: E402
from training.shift import SHIFTS, apply_shift  # noqa: E402
from training.trust import rebuild_split  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "robustness.json"
UNSHIFTED = "none"


def scores(labels: np.ndarray, probs: np.ndarray, classes: list[str],
           threshold: float | None) -> dict[str, Any]:
    """Balanced accuracy, per-class recall and the class most over-called (false calls)."""
    report = classification_report(labels, probs, classes, threshold=threshold)
    cm = np.array(report["confusion_matrix"])
    false_calls = cm.sum(0) - np.diag(cm)
    return {"balanced_accuracy": report["balanced_accuracy"],
            "recall": {c: report["per_class"][c]["recall"] for c in classes},
            "most_false_calls": (f"{classes[int(false_calls.argmax())]} "
                                 f"({int(false_calls.max())})") if false_calls.any() else "-"}


def scored_images(card: ModelCard, split: str, threads: int
                  ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Decoded images, labels, and the indices the probe fits on and both are scored on."""
    if split == "test":
        paths, labels, is_test = card_data(card, ROOT)
        images = decode_images(paths, card.preprocessing, card.input_size, threads)
        return images, labels, np.flatnonzero(~is_test), np.flatnonzero(is_test)
    sources = [ROOT / entry["source"] for entry in card.data.get("sources") or []] or None
    dataset, images, rebuilt = rebuild_split(card, sources)
    return images, np.asarray(dataset.labels), rebuilt.train, rebuilt.val


def shifted_scores(folder: Path, card: ModelCard, split: str, threads: int, batch_size: int
                   ) -> dict[str, Any]:
    """Model and probe scores on the card's test (or validation) split, unshifted and under
    every shift."""
    start = time.perf_counter()
    images, labels, fit, scored = scored_images(card, split, threads)
    probe = fit_probe(images[fit], labels[fit], len(card.classes), batch_size=batch_size)
    loaded = load_model(folder, device="cpu")
    test, test_labels = images[torch.from_numpy(scored)], labels[scored]
    rows = {}
    for name in (UNSHIFTED, *SHIFTS):
        view = test if name == UNSHIFTED else apply_shift(name, test)
        rows[name] = {
            "model": scores(test_labels, model_probabilities(loaded, view), card.classes,
                            card.decision_threshold),
            "probe": scores(test_labels, probe.predict_proba(probe_features(view, batch_size)),
                            card.classes, None)}
    return {"split": split, "n": len(scored), "shifts": rows,
            "seconds": round(time.perf_counter() - start, 1)}


def _split_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the card's test split, or the validation split rebuilt from the card")


def main(argv: list[str] | None = None) -> int:
    """Score each chosen model, print the table, write the JSON; 1 if nothing was measured."""
    args, chosen, models, skipped = parse_model_bench(argv, __doc__, RESULTS, extra=_split_argument)

    results = [{"modality": modality, "task": task, "model": card.name, **measured}
               for modality, task, card, measured in measure_each(
                   models, args.weights_dir, skipped,
                   lambda folder, card: shifted_scores(folder, card, args.split, args.threads,
                                                       args.batch_size))]

    lines = [f"{'model':<18} {'shift':<18} {'model bacc':>10} {'change':>8} {'probe bacc':>10} "
             f"{'change':>8}  model's most false calls"]
    for r in results:
        base = r["shifts"][UNSHIFTED]
        for name, row in r["shifts"].items():
            model, probe = row["model"]["balanced_accuracy"], row["probe"]["balanced_accuracy"]
            lines.append(
                f"{r['model']:<18} {name:<18} {model:>10.3f} "
                f"{(model - base['model']['balanced_accuracy']) * 100:>+6.1f}pt {probe:>10.3f} "
                f"{(probe - base['probe']['balanced_accuracy']) * 100:>+6.1f}pt  "
                f"{row['model']['most_false_calls']}")
    lines += [f"{task} skipped: {why}" for task, why in skipped.items()]
    summary = {"environment": environment(), "modalities": chosen, "split": args.split,
               "shifts": list(SHIFTS),
               "models": results, "skipped": skipped}
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
