"""``python -m xai.localize``: how well each method's map finds the annotated region.

    python -m xai.localize --images DIR --masks DIR (--model NAME | --modality M)
                           [--target CLASS] [--methods all|name,name] [--split all|test|val]
                           [--threshold otsu|fraction|topk] [--region box|mask] [--limit N]
                           [--json] [--weights-dir DIR]

``--model`` is a registry folder name (or a model folder path), ``--modality`` the modality's
default model. Each image in ``--images`` is paired with the mask of the same stem in
``--masks`` (any image extension; non-zero = region; a box mask works as is, and so do
Kvasir-SEG's white-on-black polyp masks). ``--split test`` keeps only the images the model's
card lists in its test split (matched by file name), so a model is scored on images it never
trained on; ``--split val`` keeps its validation images (the split rebuilt from the card's data
sources, seed and grouping), to choose between models without touching the test split. The map
of each method is resized to
the mask (bilinear) and scored with :func:`xai.metrics.localization_scores`: IoU and Dice of the
thresholded map's largest component (its box with ``--region box``, the default, as in the
studies), pointing game and energy-based pointing game. Beside the methods it reports two
references. ``whole frame``: the scores of a map that marks every pixel (IoU and Dice of the
whole frame, pointing and energy of a uniform map = the mask's share of the frame); a method
that does not beat it has not localised anything. ``ideal hxw map``: the best map a CAM at the
target layer's h x w grid can draw (each cell's share of the mask, upsampled and scored by the
same rule); the ceiling that layer's resolution and the region rule leave. Prints mean scores per method (and with
``--json`` the per-image scores too); a tqdm progress bar goes to stderr. Bad input: exit code
2 and one line ``error: <message>``. Needs a whole-image preprocessing on the card
(:data:`imaging.WHOLE_IMAGE`: a cropping one would move the map away from the mask).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from xai.cli import CliError, OneLineParser, fail, parse_options

if TYPE_CHECKING:
    from models.card import ModelCard
    from xai.engine import CamMap

__all__ = ["IMAGE_SUFFIXES", "SCORES", "format_table", "grid_of", "ideal_map_scores", "main",
           "pair_files", "reference_rows", "run_localization", "score_maps", "split_pairs",
           "whole_frame_scores"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
SCORES = ("iou", "dice", "pointing", "energy")


def pair_files(images: Path, masks: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, mask) pairs by stem, sorted; and the image names that have no mask."""
    if not images.is_dir():
        raise CliError(f"--images {images} is not a folder")
    if not masks.is_dir():
        raise CliError(f"--masks {masks} is not a folder")
    mask_by_stem = {p.stem: p for p in sorted(masks.iterdir())
                    if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs, unpaired = [], []
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in mask_by_stem:
            pairs.append((path, mask_by_stem[path.stem]))
        else:
            unpaired.append(path.name)
    if not pairs:
        raise CliError(f"no image in {images} has a mask of the same name in {masks}")
    return pairs, unpaired


def whole_frame_scores(gt: np.ndarray) -> dict[str, float]:
    """Scores of the uninformative map that marks the whole frame (the reference to beat)."""
    share = float(np.count_nonzero(gt)) / gt.size
    return {"iou": share, "dice": 2 * share / (1 + share), "pointing": share, "energy": share}


def ideal_map_scores(gt: np.ndarray, grid: tuple[int, int], threshold: str = "otsu",
                     region: str = "box") -> dict[str, float]:
    """Scores of the best map on a ``grid`` (h, w) of cells: each cell's share of the mask,
    upsampled bilinearly like a CAM (a mask filling every cell gives a uniform map)."""
    cells = cv2.resize(gt.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    heat = cv2.resize(cells, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
    span = float(heat.max() - heat.min())
    heat = (heat - heat.min()) / span if span > 0 else np.ones_like(heat)
    return _scores(heat, gt, threshold, region)


def grid_of(maps: Mapping[str, CamMap], layer: str) -> tuple[int, int] | None:
    """The native grid of the maps computed at ``layer`` (the CAM target layer), else of the
    first map with one grid; None when no map knows its grid."""
    single = [cam for cam in maps.values() if len(cam.grids) == 1]
    at_layer = [cam for cam in single if cam.layer == layer]
    return (at_layer or single)[0].grids[0] if single else None


def score_maps(maps: Mapping[str, CamMap], gt: np.ndarray, threshold: str = "otsu",
               region: str = "box") -> dict[str, dict[str, float]]:
    """Scores of each map against a bool mask ``gt``: the map is resized to the mask
    (bilinear), then :func:`xai.metrics.localization_scores`."""
    scores = {}
    for name, cam in maps.items():
        heat = cv2.resize(cam.map, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
        scores[name] = _scores(heat, gt, threshold, region)
    return scores


def _scores(heat: np.ndarray, gt: np.ndarray, threshold: str, region: str) -> dict[str, float]:
    from xai.metrics import localization_scores  # torch: loaded on first use, not for --help

    return localization_scores(heat, gt, threshold=threshold, region=region).as_dict()


def _read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise CliError(f"cannot read mask {path.name}")
    return mask > 127 if mask.max() > 1 else mask > 0


def split_pairs(pairs: list[tuple[Path, Path]], card: ModelCard, split: str
                ) -> list[tuple[Path, Path]]:
    """The pairs whose image file name is in the model's ``split``: ``test`` as the card
    records it, ``val`` rebuilt from the card's data sources, seed and grouping (checked
    against the recorded test split; for choosing between models on validation data)."""
    if split == "test":
        names = {Path(f).name for f in card.split.get("test_files") or ()}
        if not names:
            raise CliError("the model card records no test split (test_files)")
    else:
        from training.trust import rebuild_split

        try:
            dataset, _, rebuilt = rebuild_split(card)
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot rebuild the validation split from the card: {exc}") from None
        names = {Path(dataset.files[i]).name for i in rebuilt.val}
    kept = [pair for pair in pairs if pair[0].name in names]
    if not kept:
        raise CliError(f"none of these images is in the model's {split} split")
    return kept


def run_localization(
    modality: str | None,
    images: Path,
    masks: Path,
    *,
    model: str | Path | None = None,
    split: str = "all",
    methods: str | Sequence[str] = "all",
    target: str | int | None = None,
    threshold: str = "otsu",
    region: str = "box",
    limit: int | None = None,
    weights_dir: Path | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every method over the folder with the default model of ``modality`` or the
    registry model ``model`` (``split``: ``all``, or only the images of its ``test`` or ``val``
    split, see :func:`split_pairs`); returns the JSON-ready summary."""
    from tqdm import tqdm

    from imaging import WHOLE_IMAGE, load_path
    from models.registry import load_for_modality, load_named
    from xai.engine import explain_loaded, resolve_methods

    if (modality is None) == (model is None):
        raise CliError("name either a modality or a model")
    loaded = load_named(model, weights_dir) if model is not None else load_for_modality(
        modality, weights_dir)
    if loaded.card.preprocessing not in WHOLE_IMAGE:
        raise CliError(f"model {loaded.card.name} uses {loaded.card.preprocessing!r} "
                       f"preprocessing; localisation needs a whole-image one "
                       f"({', '.join(WHOLE_IMAGE)})")
    names = resolve_methods(methods, loaded.arch.stage_layers)
    pairs, unpaired = pair_files(images, masks)
    if split != "all":
        pairs = split_pairs(pairs, loaded.card, split)
    if limit is not None:
        pairs = pairs[:limit]
    per_image: list[dict[str, Any]] = []
    totals = {n: {k: 0.0 for k in (*SCORES, "ms")} for n in names}
    reference = dict.fromkeys(SCORES, 0.0)
    ideal = dict.fromkeys(SCORES, 0.0)
    grid: tuple[int, int] | None = None
    for image_path, mask_path in tqdm(pairs, desc="localize", unit="img", disable=not progress,
                                      file=sys.stderr):
        rgb = load_path(image_path).rgb
        gt = _read_mask(mask_path)
        result = explain_loaded(loaded, rgb, methods=names, target=target, options=options)
        grid = grid or grid_of(result.maps, loaded.arch.target_layer)
        for key, value in whole_frame_scores(gt).items():
            reference[key] += value
        for key, value in ideal_map_scores(gt, grid, threshold, region).items():
            ideal[key] += value
        row: dict[str, Any] = {"file": image_path.name, "label": result.label,
                               "confidence": result.confidence,
                               "methods": score_maps(result.maps, gt, threshold, region)}
        for name, scores in row["methods"].items():
            for key in SCORES:
                totals[name][key] += scores[key]
            totals[name]["ms"] += result.maps[name].ms + result.pass_ms
        per_image.append(row)
    n = len(per_image)
    return {
        "model": loaded.card.name, "modality": loaded.card.modality, "task": loaded.card.task,
        "split": split, "target": "predicted" if target is None else str(target),
        "threshold": threshold, "region": region, "images": n, "unpaired": unpaired,
        "methods": {name: {k: v / n for k, v in t.items()} for name, t in totals.items()},
        "whole_frame": {k: v / n for k, v in reference.items()},
        "ideal_map": {"grid": list(grid or ()), **{k: v / n for k, v in ideal.items()}},
        "per_image": per_image,
    }


def reference_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """The two reference rows of a summary, named for a table: whole frame, ideal map."""
    h, w = summary["ideal_map"]["grid"]
    return [("(whole frame)", summary["whole_frame"]), (f"(ideal {h}x{w} map)", summary["ideal_map"])]


def format_table(summary: dict[str, Any]) -> str:
    """Plain-text table of the mean scores per method, and the two reference rows."""
    rows = [*summary["methods"].items(), *reference_rows(summary)]
    split = " of the model's test split" if summary.get("split") == "test" else ""
    lines = [f"{summary['images']} images{split}, model {summary['model']}, target {summary['target']}, "
             f"{summary['threshold']} threshold, {summary['region']} region",
             f"{'method':<18} {'IoU':>7} {'Dice':>7} {'Point':>7} {'Energy':>7} {'ms':>8}"]
    for name, s in rows:
        ms = f"{s['ms']:8.1f}" if "ms" in s else f"{'-':>8}"
        lines.append(f"{name:<18} {s['iou']:7.4f} {s['dice']:7.4f} {s['pointing']:7.3f} "
                     f"{s['energy']:7.3f} {ms}")
    return "\n".join(lines)


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m xai.localize", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of images")
    parser.add_argument("--masks", type=Path, required=True, help="folder of masks (same stems)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registry folder name, or a model folder path")
    which.add_argument("--modality", help="endoscopy, mri, xray or histology (its default model)")
    parser.add_argument("--split", default="all", choices=("all", "test", "val"),
                        help="all pairs, or only the images of the model's test split, or of its "
                             "validation split (rebuilt from the card's data: run from the "
                             "folder the model was trained in)")
    parser.add_argument("--target", help="class name or index (default: predicted class)")
    parser.add_argument("--methods", default="all", help="'all' or comma-separated names")
    parser.add_argument("--threshold", default="otsu", choices=("otsu", "fraction", "topk"),
                        help="how a map becomes a region: Otsu's threshold (default), half its "
                             "maximum, or its top 20 %% of pixels")
    parser.add_argument("--region", default="box", choices=("box", "mask"),
                        help="score the region's bounding box (default, as in the studies) or "
                             "the region itself")
    parser.add_argument("--limit", type=int, help="score only the first N pairs")
    parser.add_argument("--options", help="per-method options as JSON")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--weights-dir", type=Path, help="model registry folder (default: weights/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input or no model)."""
    args = _parser().parse_args(argv)
    from imaging import ImageInputError
    from models.registry import ModelUnavailable

    if args.limit is not None and args.limit < 1:
        return fail("--limit must be at least 1")
    try:
        summary = run_localization(
            args.modality, args.images, args.masks, model=args.model, split=args.split,
            methods=args.methods, target=args.target,
            threshold=args.threshold, region=args.region, limit=args.limit,
            weights_dir=args.weights_dir, options=parse_options(args.options),
        )
    except (CliError, ImageInputError, ModelUnavailable, ValueError, OSError) as exc:
        return fail(exc)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
