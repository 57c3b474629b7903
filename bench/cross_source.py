"""Cross-source check: sibling runs trained on one source of a modality, scored on another.

    python bench/cross_source.py [--runs ../runs] [--modality mri] [--write-card]
                                 [--weights-dir DIR] [--json]
                                 [--out bench/results/cross_source.json]

Reads the cards of the runs in ``--runs`` (``training/ship_defaults.sh``'s ``mri-cross-*``:
the shipped recipe trained on one Kaggle split, with the other as ``--external``) and tabulates
each run's external figures beside its own test split. A run counts only if it has external
metrics, is of the shipped default model's modality and task, and was trained with the shipped
model's recipe (every training setting alike but the data; settings a code version did not
know count as off), so that the figures say how that recipe carries over to a new source.
``--write-card`` stores the rows in the default model's card as ``metrics["cross_source"]``,
which the Models page shows. Exit code 1 when no run qualifies.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, write_results  # noqa: E402
from imaging import MODALITIES  # noqa: E402
from models.card import CARD_FILE, ModelCard  # noqa: E402
from models.registry import find_card  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "cross_source.json"
# Recipe fields that describe the run, not the training: where it ran and how it was invoked.
NOT_TRAINING = {"command", "resumed_with", "notes", "torch", "device", "world_size", "amp",
                "channels_last", "name", "source"}


def training_settings(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe's training settings; off (``None``, 0, ``False``) all read as ``None``."""
    return {k: (None if v in (None, 0, False) else v) for k, v in recipe.items()
            if k not in NOT_TRAINING}


def recipe_differences(shipped: ModelCard, run: ModelCard) -> list[str]:
    """The training settings in which ``run`` differs from ``shipped``."""
    a, b = training_settings(shipped.recipe), training_settings(run.recipe)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def run_row(run: ModelCard) -> dict[str, Any]:
    """One run's external and own-test figures, with what reproduces it."""
    external = run.metrics["external"]
    return {"model": run.name, "trained_on": ", ".join(Path(s["source"]).name
                                                       for s in run.data.get("sources", [])),
            "tested_on": ", ".join(Path(s).name for s in str(external.get("data", "")).split()),
            "n": external.get("n"), "accuracy": external.get("accuracy"),
            "accuracy_ci95": external.get("accuracy_ci95"),
            "balanced_accuracy": external.get("balanced_accuracy"),
            "macro_f1": external.get("macro_f1"),
            "confusion_matrix": external.get("confusion_matrix"),
            "own_test_accuracy": run.metrics.get("accuracy"), "own_test_n": run.metrics.get("n"),
            "test_time_crops": run.test_time_crops, "test_time_flips": run.test_time_flips,
            "recalibrated": run.metrics.get("recalibrated", {}).get("command"),
            "code_version": run.code_version, "command": run.recipe.get("command")}


def main(argv: list[str] | None = None) -> int:
    """Tabulate the qualifying runs, write the JSON (and the card); 1 if none qualifies."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT.parent / "runs",
                        help="folder of run folders, each with a card.json (default ../runs)")
    parser.add_argument("--modality", choices=MODALITIES, default="mri",
                        help="whose default model the runs are checked against (default mri)")
    parser.add_argument("--weights-dir", type=Path, help="registry (default: weights/)")
    parser.add_argument("--write-card", action="store_true",
                        help='store the rows in the default model\'s card as metrics["cross_source"]')
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        parser.error(f"--runs {args.runs} is not a folder")
    folder, shipped = find_card(args.modality, args.weights_dir)

    rows, skipped = [], {}
    for path in sorted(args.runs.glob(f"*/{CARD_FILE}")):
        run = ModelCard.read(path.parent)
        if not isinstance(run.metrics.get("external"), dict):
            skipped[run.name] = "no external metrics"
        elif (run.modality, run.task) != (shipped.modality, shipped.task):
            skipped[run.name] = f"{run.modality} / {run.task}, not {shipped.modality} / {shipped.task}"
        elif differences := recipe_differences(shipped, run):
            skipped[run.name] = f"recipe differs from {shipped.name}: {', '.join(differences)}"
        else:
            rows.append(run_row(run))

    lines = [f"{'run':<22} {'trained on':<22} {'tested on':<22} {'n':>5} {'accuracy (95% CI)':>22} "
             f"{'bal. acc.':>9} {'own test':>9}"]
    for r in rows:
        low, high = r["accuracy_ci95"] or (float("nan"), float("nan"))
        lines.append(f"{r['model']:<22} {r['trained_on']:<22} {r['tested_on']:<22} {r['n']!s:>5} "
                     f"{r['accuracy']:>9.3f} ({low:.3f}-{high:.3f}) {r['balanced_accuracy']:>9.3f} "
                     f"{r['own_test_accuracy']:>9.3f}")
    lines += [f"{name} skipped: {why}" for name, why in skipped.items()]
    summary: dict[str, Any] = {"environment": environment(), "model": shipped.name,
                               "runs": rows, "skipped": skipped}
    if args.write_card and rows:
        record = {"note": f"sibling models with {shipped.name}'s recipe, each trained on one source "
                          "and scored on another (training/ship_defaults.sh, bench/cross_source.py); "
                          f"{shipped.name} trains on all of them", "runs": rows}
        replace(shipped, metrics={**shipped.metrics, "cross_source": record}).write(folder)
        lines.append(f"written to {folder.name}/{CARD_FILE}")
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
