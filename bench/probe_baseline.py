"""Linear-probe baseline: every shipped model against a probe on frozen ImageNet features.

    python bench/probe_baseline.py [--modalities histology,mri] [--weights-dir DIR]
                                   [--write-cards] [--threads 2] [--json]
                                   [--out bench/results/probe_baseline.json]

For each default model of a (modality, task) (``models.registry.registry_status``, by task) of
the chosen modalities the card's data is listed again
(``data.sources``, else ``data.source``; relative paths are relative to the repository root),
decoded once with the card's preprocessing and input size, and split into the card's exact test
files (``split.test_files``, checked against ``split.test_sha256``) and all other images. The
probe (:func:`training.probe.linear_probe`) trains on the others and is scored on the test
files. Rule: the model beats the probe by >= 3 points of balanced accuracy or, where the probe
already scores >= 0.97, is no worse. ``--write-cards`` stores the probe report in the card as
``metrics["probe"]`` (weights untouched). Prints a table, writes JSON (tasks without a model
are listed as skipped, by task id).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402
    environment,
    measure_each,
    parse_model_bench,
    store_in_card,
    write_results,
)
from models.card import PROBE_MARGIN, PROBE_SATURATED, ModelCard, beats_probe  # noqa: E402
from training.data import card_data, decode_images, sha256_of_files  # noqa: E402
from training.probe import linear_probe  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "probe_baseline.json"


def probe_card(card: ModelCard, threads: int, batch_size: int) -> dict[str, Any]:
    """Decode the card's data once and return the probe report on the card's test split."""
    start = time.perf_counter()
    paths, labels, is_test = card_data(card, ROOT)
    images = decode_images(paths, card.preprocessing, card.input_size, threads)
    decoded = time.perf_counter()
    report = linear_probe(images[~is_test], labels[~is_test], images[is_test], labels[is_test],
                          card.classes, batch_size=batch_size)
    report["test_sha256"] = sha256_of_files(card.split["test_files"])
    report["input_size"] = card.input_size
    report["seconds"] = {"decode": round(decoded - start, 1),
                         "probe": round(time.perf_counter() - decoded, 1)}
    return report


def main(argv: list[str] | None = None) -> int:
    """Probe each chosen model, print the table, write the JSON; 1 if nothing was measured."""
    args, chosen, models, skipped = parse_model_bench(argv, __doc__, RESULTS, stores="probe")

    rows: list[dict[str, Any]] = []
    for modality, task, card, probe in measure_each(
            models, args.weights_dir, skipped,
            lambda _, card: probe_card(card, args.threads, args.batch_size)):
        model_bacc = float(card.metrics["balanced_accuracy"])
        row = {"modality": modality, "task": task, "model": card.name, "n": card.metrics.get("n"),
               "model_accuracy": card.metrics.get("accuracy"), "model_balanced_accuracy": model_bacc,
               "probe_accuracy": probe["accuracy"], "probe_balanced_accuracy": probe["balanced_accuracy"],
               "difference": model_bacc - probe["balanced_accuracy"],
               "passes": beats_probe(model_bacc, probe["balanced_accuracy"]), "probe": probe}
        if args.write_cards:
            row["card"] = store_in_card(modality, card, "probe", probe, args.weights_dir)
        rows.append(row)

    lines = [f"{'modality':<10} {'model':<18} {'test n':>6} {'model bacc':>10} {'probe bacc':>10} "
             f"{'diff':>8} {'probe C':>8}  rule"]
    for r in rows:
        lines.append(f"{r['modality']:<10} {r['model']:<18} {r['n']!s:>6} "
                     f"{r['model_balanced_accuracy']:>10.3f} {r['probe_balanced_accuracy']:>10.3f} "
                     f"{r['difference'] * 100:>+6.1f}pt {r['probe']['C']:>8.3g}  "
                     f"{'pass' if r['passes'] else 'FAIL'}" + (f"  ({r['card']})" if "card" in r else ""))
    lines += [f"{task} skipped: {why}" for task, why in skipped.items()]
    lines.append(f"rule: model >= probe + {PROBE_MARGIN * 100:.0f} points of balanced accuracy, or "
                 f"model >= probe where the probe scores >= {PROBE_SATURATED}")
    summary = {"environment": environment(), "modalities": chosen,
               "rule": {"margin": PROBE_MARGIN, "saturated": PROBE_SATURATED}, "models": rows,
               "skipped": skipped}
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
