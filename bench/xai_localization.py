"""Localisation of each CAM method on capsule-endoscopy bleeding boxes, beside the studies' figures.

    python bench/xai_localization.py [--data DIR] [--methods all|name,...] [--limit N]
                                     [--threshold otsu] [--region box] [--json] [--per-image]
                                     [--weights-dir DIR] [--out bench/results/xai_localization.json]

Runs ``xai.localize`` on ``<data>/wce-bleeding/bleeding`` with the box masks of
``<data>/wce-bleeding-masks/bleeding``, the installed endoscopy model and target class
``bleeding``, and prints IoU / Dice / pointing per method next to the figures of the HayCAM+
study (ResNet-18, mask / no-mask) and the DT Grad-CAM study (BreakHis 40x). Those are other
data sets and models: context, not a like-for-like comparison. ``<data>`` defaults to
``$MEDXAI_DATA`` or ``shared/data`` beside the repository. Without an installed
endoscopy model it exits with code 1 and says so.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


def default_data() -> Path:
    env = os.environ.get("MEDXAI_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--methods", default="all")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--threshold", default="otsu", choices=("otsu", "fraction", "topk"))
    parser.add_argument("--region", default="box", choices=("box", "mask"))
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "xai_localization.json")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--per-image", action="store_true",
                        help="keep the per-image scores in the JSON (large)")
    args = parser.parse_args(argv)

    from bench._common import write_results
    from models.registry import ModelUnavailable, load_for_modality
    from xai.cli import CliError
    from xai.localize import reference_rows, run_localization

    images = args.data / "wce-bleeding" / "bleeding"
    masks = args.data / "wce-bleeding-masks" / "bleeding"
    if not images.is_dir() or not masks.is_dir():
        print(f"error: shared data not found: need {images} and {masks} (set --data or "
              "MEDXAI_DATA)", file=sys.stderr)
        return 1
    try:
        load_for_modality("endoscopy", args.weights_dir)
    except ModelUnavailable as exc:
        print(f"error: no endoscopy model is installed, so there is nothing to score yet ({exc})",
              file=sys.stderr)
        return 1
    try:
        summary = run_localization("endoscopy", images, masks, methods=args.methods,
                                   target="bleeding", threshold=args.threshold,
                                   region=args.region, limit=args.limit,
                                   weights_dir=args.weights_dir)
    except (CliError, ModelUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary["studies"] = {k: {m: {"iou": v[0], "dice": v[1]} for m, v in d.items()}
                          for k, d in STUDIES.items()}
    if not args.per_image:
        summary.pop("per_image")
    names = list(STUDIES)
    lines = [f"{summary['images']} bleeding images, model {summary['model']}, target bleeding, "
             f"{args.threshold} threshold, {args.region} region"]
    header = f"{'method':<18} {'IoU':>7} {'Dice':>7} {'Point':>6} {'Energy':>7}"
    lines.append(header + "".join(f"  study{i + 1} IoU/Dice" for i in range(len(names))))
    for name, s in [*summary["methods"].items(), *reference_rows(summary)]:
        row = (f"{name:<18} {s['iou']:7.4f} {s['dice']:7.4f} {s['pointing']:6.3f} "
               f"{s['energy']:7.3f}")
        for study in names:
            fig = STUDIES[study].get(name)
            row += f"  {fig[0]:.4f}/{fig[1]:.4f}" if fig else f"  {'-':>15}"
        lines.append(row)
    lines += [f"study{i + 1}: {study}" for i, study in enumerate(names)]
    lines.append("(whole frame): the uninformative map that marks every pixel; a method below it "
                 "has not localised anything")
    lines.append("(ideal map): each cell of the target layer's grid holds its share of the box "
                 "mask; the most a map at that resolution can score with this region rule")
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
