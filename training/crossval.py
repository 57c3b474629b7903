"""Pool the validation figures of K-fold validation runs to compare recipes.

``python -m training.crossval RUN [RUN ...] [--json]``

Each RUN is a model folder (its ``card.json``) trained with ``--val-folds K --val-fold i``: the
runs of one recipe share the ratio split's test images and each validates on another grouped
fold of the rest, so together they score every non-test image once, out of fold. A small
validation split decides on one or two images; the pooled figures decide on all of them. Runs
are grouped by recipe (everything but the fold and the command line); one row per recipe, named
by the settings that differ between them; below, where the runs' cards carry them, every
decision-view candidate pooled: its log-loss and the shift guard's largest class-recall loss
over all runs' images. The test split is never read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.card import wilson_interval

__all__ = ["PooledFolds", "decision_views", "main", "pool_folds", "recipe_key"]

# Recipe entries that differ between the folds of one recipe, or say nothing about the recipe.
NOT_RECIPE = frozenset({"val_fold", "command", "resumed_with", "device", "world_size", "torch"})


@dataclass(frozen=True)
class PooledFolds:
    """Out-of-fold validation figures of one recipe's runs."""

    recipe: str
    runs: list[str]
    folds: list[int]
    val_folds: int
    n: int
    errors: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    balanced_accuracy: float
    log_loss: float
    fold_errors: list[int]
    views: dict[str, dict[str, Any]]

    @property
    def complete(self) -> bool:
        return sorted(self.folds) == list(range(self.val_folds))


def recipe_key(card: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two runs the same recipe: the card's recipe without fold and command line."""
    recipe = {k: v for k, v in card["recipe"].items() if k not in NOT_RECIPE}
    return {"arch": card["arch"], "input_size": card["input_size"], **recipe,
            "data": [s.get("source") for s in card["data"].get("sources", [])],
            "test_sha256": card["split"].get("test_sha256")}


def _val_figures(card: Mapping[str, Any], where: str) -> tuple[int, int, dict[str, tuple[int, int]], float]:
    """n, errors, per-class (correct, support) and log-loss at T = 1 of one run's validation."""
    val = card["metrics"].get("val")
    calibration = card["metrics"].get("calibration", {})
    if not val or "nll_before" not in calibration:
        raise ValueError(f"{where}: the card has no validation figures (train with this code)")
    per_class = {c: (round(m["recall"] * m["support"]), int(m["support"]))
                 for c, m in val["per_class"].items()}
    n = int(val["n"])
    return n, n - sum(c for c, _ in per_class.values()), per_class, float(calibration["nll_before"])


def _views_name(candidate: Mapping[str, Any]) -> str:
    views = [f"{c:g} crop" for c in candidate.get("crops", [])] + list(candidate.get("flips", []))
    return " + ".join(["image", *views])


def _pooled_views(cards: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every decision-view candidate that all runs scored (:func:`training.calibrate.choose_views`),
    pooled over the runs: its validation log-loss (each run at its own fitted T) and, where the
    runs scored shifts, each class's recall under each shift over all runs' images, with its
    largest loss against the image alone and whether the shift guard's rule vetoes it."""
    from training.calibrate import MAX_SHIFTED_RECALL_LOSS, MIN_SHIFTED_IMAGES_LOST

    runs = []
    for card in cards:
        val = card["metrics"]["val"]
        support = {c: int(m["support"]) for c, m in val["per_class"].items()}
        choice = card["metrics"]["calibration"].get("test_time_views", {})
        runs.append((int(val["n"]), support, {_views_name(c): c for c in choice.get("candidates", [])}))
    names = [name for name in runs[0][2] if all(name in r[2] for r in runs)] if runs else []
    total = sum(n for n, _, _ in runs)
    pooled: dict[str, dict[str, Any]] = {}
    for name in names:
        entry: dict[str, Any] = {"crops": runs[0][2][name]["crops"],
                                 "flips": runs[0][2][name]["flips"],
                                 "nll": sum(n * c[name]["nll"] for n, _, c in runs) / total}
        if all("shifted_recall" in c[name] for _, _, c in runs):
            hits: dict[tuple[str, str], list[float]] = {}
            for _, support, c in runs:
                for shift, recalls in c[name]["shifted_recall"].items():
                    for k, recall in recalls.items():
                        cell = hits.setdefault((shift, k), [0.0, 0])
                        cell[0] += recall * support[k]
                        cell[1] += support[k]
            entry["shifted_recall"] = {cell: h / s for cell, (h, s) in hits.items()}
            entry["support"] = {cell: s for cell, (_, s) in hits.items()}
        pooled[name] = entry
    alone = pooled.get("image", {}).get("shifted_recall")
    for entry in pooled.values():
        if alone and "shifted_recall" in entry:
            cells = [(alone[cell] - recall, round((alone[cell] - recall) * entry["support"][cell]),
                      cell) for cell, recall in entry["shifted_recall"].items()]
            loss, images, (shift, k) = max(cells)
            entry["largest_shifted_loss"] = {"loss": loss, "images": images, "shift": shift,
                                             "class": k}
            entry["vetoed"] = any(lost > MAX_SHIFTED_RECALL_LOSS and n >= MIN_SHIFTED_IMAGES_LOST
                                  for lost, n, _ in cells)
        entry.pop("shifted_recall", None)
        entry.pop("support", None)
    return pooled


def _label(key: Mapping[str, Any], others: Sequence[Mapping[str, Any]]) -> str:
    """The settings of ``key`` that differ from some other recipe's (its arch when none do)."""
    differing = [k for k in key if k != "test_sha256" and any(o.get(k) != key[k] for o in others)]
    return ", ".join(f"{k}={key[k]}" for k in differing) or str(key["arch"])


def pool_folds(cards: Sequence[tuple[str, Mapping[str, Any]]]) -> list[PooledFolds]:
    """One :class:`PooledFolds` per recipe among ``(run name, card)`` pairs."""
    groups: list[tuple[dict[str, Any], list[tuple[str, Mapping[str, Any]]]]] = []
    for name, card in cards:
        if not card["split"].get("val_folds"):
            raise ValueError(f"{name}: not a --val-folds run (its split has no validation folds)")
        key = recipe_key(card)
        for known, members in groups:
            if known == key:
                members.append((name, card))
                break
        else:
            groups.append((key, [(name, card)]))
    pooled = []
    for key, members in groups:
        folds = [int(card["split"]["val_fold"]) for _, card in members]
        if len(set(folds)) != len(folds):
            raise ValueError(f"runs {[n for n, _ in members]} repeat a validation fold")
        figures = [_val_figures(card, name) for name, card in members]
        n = sum(f[0] for f in figures)
        errors = sum(f[1] for f in figures)
        correct: dict[str, list[int]] = {}
        for _, _, per_class, _ in figures:
            for c, (hits, support) in per_class.items():
                total = correct.setdefault(c, [0, 0])
                total[0] += hits
                total[1] += support
        others = [k for k, _ in groups if k is not key]
        pooled.append(PooledFolds(
            recipe=_label(key, others), runs=[name for name, _ in members], folds=folds,
            val_folds=int(members[0][1]["split"]["val_folds"]), n=n, errors=errors,
            accuracy=(n - errors) / n, accuracy_ci=wilson_interval(n - errors, n),
            balanced_accuracy=sum(h / s for h, s in correct.values()) / len(correct),
            log_loss=sum(f[0] * f[3] for f in figures) / n,
            fold_errors=[f[1] for f in figures],
            views=_pooled_views([card for _, card in members])))
    return pooled


def decision_views(model: Mapping[str, Any], runs: Sequence[tuple[str, Mapping[str, Any]]]
                   ) -> dict[str, Any]:
    """The decision views of ``model`` (a card), chosen by the rule of
    :func:`training.calibrate.choose_views` on the candidates pooled over ``runs``: ``(name,
    card)`` of ``--val-folds`` runs of its recipe. The record for its card's calibration."""
    from training.calibrate import MIN_VIEW_GAIN, adopt

    pooled = pool_folds(runs)
    if len(pooled) != 1:
        raise ValueError(f"the runs are {len(pooled)} recipes, not one: "
                         f"{'; '.join(p.recipe for p in pooled)}")
    ours, theirs = recipe_key(model), recipe_key(runs[0][1])
    differing = sorted(k for k in ours.keys() | theirs.keys()
                       if k != "val_folds" and (ours.get(k) or None) != (theirs.get(k) or None))
    if differing:
        raise ValueError(f"the runs' recipe differs from {model['name']}'s in {differing}")
    p = pooled[0]
    if not p.views:
        raise ValueError("the runs' cards score no decision views (calibrate them with this code)")
    best = adopt(list(p.views.values()))
    folds = "all" if p.complete else f"{len(p.folds)}"
    return {"chosen": {"crops": best["crops"], "flips": best["flips"]},
            "candidates": list(p.views.values()),
            "rule": (f"lowest calibrated log-loss pooled over the {p.n} out-of-fold validation "
                     f"images of {folds} of {p.val_folds} --val-folds runs of this recipe "
                     f"(training.crossval), adopted when {MIN_VIEW_GAIN:.0%} below the image "
                     f"alone and not vetoed by the shift guard (pooled)"),
            "pooled": {"runs": [_identity(name, card) for name, card in runs],
                       "folds": p.folds, "n": p.n}}


def _identity(name: str, card: Mapping[str, Any]) -> dict[str, Any]:
    """Which run, by what it is rather than where it lay: folder name, validation fold and its
    images, the commit it was trained from and its weights' sha256."""
    return {"run": Path(name).name, "val_fold": card["split"].get("val_fold"),
            "n": card["metrics"]["val"]["n"], "code_version": card.get("code_version"),
            "sha256": card.get("sha256")}


def _row(p: PooledFolds) -> str:
    folds = "" if p.complete else f" (folds {sorted(p.folds)} of {p.val_folds} only)"
    return (f"{p.recipe}{folds} | {p.n} | {p.errors} ({', '.join(map(str, p.fold_errors))}) | "
            f"{p.accuracy:.3f} ({p.accuracy_ci[0]:.3f}-{p.accuracy_ci[1]:.3f}) | "
            f"{p.balanced_accuracy:.3f} | {p.log_loss:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.crossval", description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="model folders of --val-folds runs")
    parser.add_argument("--json", action="store_true", help="print the pooled figures as JSON")
    args = parser.parse_args(argv)
    try:
        cards = [(str(run), json.loads((run / "card.json").read_text())) for run in args.runs]
        pooled = pool_folds(cards)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(p) | {"complete": p.complete} for p in pooled], indent=2))
    else:
        print("recipe | n (out of fold) | errors (per fold) | accuracy (95% CI) | balanced accuracy "
              "| log-loss (T = 1)")
        print("\n".join(_row(p) for p in sorted(pooled, key=lambda p: p.log_loss)))
        for p in pooled:
            if p.views:
                print(f"\n{p.recipe}: decision views, pooled validation log-loss (each run at its "
                      "own T); largest loss of a class's recall under a shift")
                print("\n".join(f"  {name}: {v['nll']:.4f}" + (
                    " ({loss:.3f}, {images} images: {class} under {shift})".format(
                        **v["largest_shifted_loss"]) + (" vetoed" if v["vetoed"] else "")
                    if "largest_shifted_loss" in v else "") for name, v in p.views.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
