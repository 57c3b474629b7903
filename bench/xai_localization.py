"""Localisation of each CAM method on bleeding boxes and on polyp masks, beside the studies' figures.

    python bench/xai_localization.py [--data DIR] [--tables bleeding,polyp] [--methods all|name,...]
                                     [--limit N] [--threshold otsu] [--region box|mask]
                                     [--json] [--per-image] [--write-card] [--weights-dir DIR]
                                     [--worst K] [--artifacts test-artifacts]
                                     [--out bench/results/xai_localization.json]

Two tables, each run through ``xai.localize`` with the default model of its task:

- ``bleeding``: the capsule model (``capsule-bleeding``) on the bleeding frames of its own test
  split (``<data>/wce-bleeding/bleeding``) with the box masks of
  ``<data>/wce-bleeding-masks/bleeding``, target ``bleeding``, box region. Targets: best method
  IoU >= 0.50, pointing >= 0.75, IoU >= 0.10 above the whole frame.
- ``polyp``: the colonoscopy model (``colonoscopy-polyp``) on the Kvasir-SEG frames of its own
  test split (``<data>/kvasir-seg/images``) with their pixel masks (``<data>/kvasir-seg/masks``,
  white polyp on black), target ``polyp``, mask region. Targets: best method IoU >= 0.45,
  Dice >= 0.60, pointing >= 0.85, IoU >= 0.25 above the whole frame.

Only test-split images are scored: models trained with attention supervision
(``--region-masks``) saw the masks of their training images. Each table's targets are checked
below it; ``--write-card`` stores the table and its best method (by IoU, with the threshold
used) in the model's card as ``metrics["localization"]``.

Every row is printed next to the figures of the HayCAM+ study (ResNet-18, mask / no-mask) and
the DT Grad-CAM study (BreakHis 40x): other data sets and models, context, not a like-for-like
comparison. ``<data>`` defaults to ``$MEDXAI_DATA`` or ``shared/data`` beside the repository. A
table whose model is not installed is skipped with the reason; with no table run the exit code
is 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (IoU, Dice) as published: Ornek & Ceylan 2024 (HayCAM+) and Liu et al. 2024/25 (DT Grad-CAM).
STUDIES: dict[str, dict[str, tuple[float, float]]] = {
    "HayCAM+ study (ResNet-18, mask/no-mask)": {
        "haycam_plus": (0.3740, 0.5376), "eigencam": (0.3386, 0.5003),
        "layercam": (0.2476, 0.3928), "gradcampp": (0.2472, 0.3923), "gradcam": (0.1922, 0.3153),
    },
    "DT Grad-CAM study (BreakHis 40x)": {
        "dt_gradcam": (0.3993, 0.5634), "eigencam": (0.3735, 0.5342),
        "scorecam": (0.3539, 0.5122),
        "gradcam": (0.3064, 0.4628),
    },
}


@dataclass(frozen=True)
class Table:
    """One localisation table: the task whose model is scored, images and masks under the data
    folder, the class explained, the region rule and the split scored."""

    task: str
    images: str
    masks: str
    target: str
    region: str
    what: str
    targets: dict[str, float]
    """The best method's goals: IoU, Dice, pointing and IoU above the whole frame."""


TABLES = {
    "bleeding": Table("capsule-bleeding", "wce-bleeding/bleeding", "wce-bleeding-masks/bleeding",
                      "bleeding", "box", "bleeding frames of the model's test split (boxes)",
                      {"iou": 0.50, "pointing": 0.75, "iou_above_whole_frame": 0.10}),
    "polyp": Table("colonoscopy-polyp", "kvasir-seg/images", "kvasir-seg/masks", "polyp", "mask",
                   "Kvasir-SEG polyp frames of the model's test split (pixel masks)",
                   {"iou": 0.45, "dice": 0.60, "pointing": 0.85, "iou_above_whole_frame": 0.25}),
}


def default_data() -> Path:
    env = os.environ.get("MEDXAI_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def best_method(summary: dict[str, Any]) -> str:
    """The method with the highest mean IoU."""
    return max(summary["methods"], key=lambda name: summary["methods"][name]["iou"])


def target_check(summary: dict[str, Any], targets: dict[str, float]) -> dict[str, Any]:
    """The best method's figures against ``targets``, each with whether it is met."""
    best = best_method(summary)
    scores = summary["methods"][best]
    measured = {"iou": scores["iou"], "dice": scores["dice"], "pointing": scores["pointing"],
                "iou_above_whole_frame": scores["iou"] - summary["whole_frame"]["iou"]}
    return {"method": best, "threshold": summary["threshold"],
            **{key: {"value": measured[key], "target": goal, "met": measured[key] >= goal}
               for key, goal in targets.items()}}


def format_rows(summary: dict[str, Any]) -> list[str]:
    """The table's rows: methods and references, with the studies' IoU/Dice beside them."""
    from xai.localize import reference_rows

    header = f"{'method':<18} {'IoU':>7} {'Dice':>7} {'Point':>6} {'Energy':>7}"
    lines = [header + "".join(f"  study{i + 1} IoU/Dice" for i in range(len(STUDIES)))]
    for name, s in [*summary["methods"].items(), *reference_rows(summary)]:
        row = (f"{name:<18} {s['iou']:7.4f} {s['dice']:7.4f} {s['pointing']:6.3f} "
               f"{s['energy']:7.3f}")
        for figures in STUDIES.values():
            fig = figures.get(name)
            row += f"  {fig[0]:.4f}/{fig[1]:.4f}" if fig else f"  {'-':>15}"
        lines.append(row)
    return lines


def write_card(summary: dict[str, Any], check: dict[str, Any], weights_dir: Path | None) -> str:
    """Store the table and its best method as ``metrics["localization"]`` of the scored card,
    unless the card changed while the bench ran."""
    from models.card import ModelCard
    from models.registry import find_card

    folder, card = find_card(summary["modality"], weights_dir, summary["task"])
    if card.name != summary["model"] or card.sha256 != summary["sha256"]:
        return f"not written: {folder.name} changed while the bench ran (retrained?)"
    record = {k: v for k, v in summary.items()
              if k not in ("per_image", "unpaired", "sha256", "targets")}
    record["best"] = check
    updated: ModelCard = replace(card, metrics={**card.metrics, "localization": record})
    updated.write(folder)
    return f"written to {folder.name}/card.json"


def run_table(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Score one table; raises ``LookupError`` with the reason when it cannot run."""
    from models.registry import ModelUnavailable, find_card
    from xai.cli import CliError
    from xai.localize import run_localization

    table = TABLES[name]
    images, masks = args.data / table.images, args.data / table.masks
    if not images.is_dir() or not masks.is_dir():
        raise LookupError(f"shared data not found: need {images} and {masks} (set --data or "
                          "MEDXAI_DATA)")
    try:
        folder, card = find_card("endoscopy", args.weights_dir, table.task)
    except ModelUnavailable as exc:
        raise LookupError(f"there is nothing to score yet: {exc.reason}") from None
    try:
        summary = run_localization(None, images, masks, model=folder, split="test",
                                   methods=args.methods, target=table.target,
                                   threshold=args.threshold, region=args.region or table.region,
                                   limit=args.limit)
    except (CliError, ModelUnavailable, ValueError) as exc:
        raise LookupError(str(exc)) from None
    summary["sha256"] = card.sha256
    if args.worst:
        summary["worst"] = save_worst(summary, name, folder, images, masks, args)
    if not args.per_image:
        summary.pop("per_image")
    return summary


def save_worst(summary: dict[str, Any], name: str, model: Path, images: Path, masks: Path,
               args: argparse.Namespace) -> list[dict[str, Any]]:
    """Overlays of the best method on the ``args.worst`` images where it scored the lowest IoU
    (the map on the model's view, the annotation outlined in white), saved in ``args.artifacts``
    as ``<table>-worst<k>-<image>.png``; returns their files and scores."""
    import cv2

    from imaging import load_path
    from models.registry import load_named
    from xai import explain_loaded
    from xai.overlay import overlay, save_png

    best = best_method(summary)
    rows = sorted(summary["per_image"], key=lambda row: row["methods"][best]["iou"])
    loaded = load_named(model)
    worst = []
    for k, row in enumerate(rows[:args.worst], start=1):
        image = images / row["file"]
        mask = next(masks.glob(f"{image.stem}.*"))
        result = explain_loaded(loaded, load_path(image).rgb, methods=[best],
                                target=TABLES[name].target)
        view = result.image
        outline = cv2.resize(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE),
                             view.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 127
        path = save_png(args.artifacts / f"{name}-worst{k}-{image.stem}.png",
                        overlay(view, result.maps[best], contour=outline))
        worst.append({"file": row["file"], "method": best, "label": row["label"],
                      **row["methods"][best], "overlay": path.name})
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--tables", default=",".join(TABLES),
                        help=f"comma-separated subset of {','.join(TABLES)}")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--threshold", default="otsu", choices=("otsu", "fraction", "topk"))
    parser.add_argument("--region", choices=("box", "mask"),
                        help="region rule for every table (default: box for the bleeding boxes, "
                             "mask for the polyp masks)")
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "xai_localization.json")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--per-image", action="store_true",
                        help="keep the per-image scores in the JSON (large)")
    parser.add_argument("--worst", type=int, default=0,
                        help="save overlays of the K images where the best method scored the "
                             "lowest IoU (where the maps go wrong), in --artifacts")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "test-artifacts")
    parser.add_argument("--write-card", action="store_true",
                        help='store each table and its best method in its model\'s card as '
                             'metrics["localization"]')
    args = parser.parse_args(argv)
    chosen = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = sorted(set(chosen) - set(TABLES))
    if unknown:
        parser.error(f"unknown tables {unknown}; choose from {', '.join(TABLES)}")

    from bench._common import write_results

    results: dict[str, Any] = {"skipped": {}}
    lines: list[str] = []
    for name in chosen:
        table = TABLES[name]
        try:
            summary = run_table(name, args)
        except LookupError as exc:
            results["skipped"][name] = str(exc)
            print(f"{name} table skipped: {exc}", file=sys.stderr)
            continue
        results[name] = summary
        lines += [f"{summary['images']} {table.what}, model {summary['model']}, target "
                  f"{table.target}, {summary['threshold']} threshold, {summary['region']} region",
                  *format_rows(summary)]
        check = target_check(summary, table.targets)
        summary["targets"] = check
        lines.append(f"targets (best by IoU: {check['method']}): " + ", ".join(
            f"{key} {check[key]['value']:.3f} {'>=' if check[key]['met'] else '<'} "
            f"{check[key]['target']}" for key in table.targets))
        if args.write_card:
            lines.append(write_card(summary, check, args.weights_dir))
        lines.append("")
    if len(results) == 1:
        print("error: no table could be scored: " + "; ".join(
            f"{name}: {reason}" for name, reason in results["skipped"].items()), file=sys.stderr)
        return 1
    results["studies"] = {k: {m: {"iou": v[0], "dice": v[1]} for m, v in d.items()}
                          for k, d in STUDIES.items()}
    lines += [f"study{i + 1}: {study}" for i, study in enumerate(STUDIES)]
    lines.append("(whole frame): the uninformative map that marks every pixel; a method below it "
                 "has not localised anything")
    lines.append("(ideal map): each cell of the target layer's grid holds its share of the "
                 "mask; the most a map at that resolution can score with this region rule")
    lines += [f"{name} table skipped: {reason}" for name, reason in results["skipped"].items()]
    write_results(results, args.out, "\n".join(lines), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
