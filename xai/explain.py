"""``python -m xai.explain``: class-activation maps of one image, as PNG overlays and a grid.

    python -m xai.explain PATH [--modality M] [--task T] [--methods all|name,name] [--target CLASS]
                          --out DIR [--json] [--cmap turbo|jet|inferno|viridis|cividis] [--alpha A]
                          [--contour] [--options JSON] [--weights-dir DIR]

Writes ``DIR/<stem>_<method>.png`` per method and ``DIR/<stem>_grid.png``. ``--json`` prints one
object: ``label, confidence, target, modality, task, model, pass_ms, grid, methods: {name: {ms, file,
flat, layer, label}}``. Bad input (unreadable image, unknown method or class, no model for
the modality): exit code 2 and one line ``error: <message>`` on stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xai.cli import CliError, OneLineParser, fail, parse_options
from xai.overlay import COLORMAPS, grid, overlay, save_png

if TYPE_CHECKING:
    from xai.engine import Explanation

__all__ = ["main", "write_outputs"]


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m xai.explain", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="PNG, JPEG, BMP, TIFF or DICOM file")
    parser.add_argument("--modality", help="endoscopy, mri, xray or histology "
                                           "(default: from the DICOM tag)")
    parser.add_argument("--task", help="e.g. capsule-bleeding or colonoscopy-polyp "
                                       "(default: the router's)")
    parser.add_argument("--methods", default="all",
                        help="'all' (default), or comma-separated names, e.g. gradcam,haycam_plus")
    parser.add_argument("--target", help="class name or index to explain (default: predicted)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cmap", default="turbo", choices=sorted(COLORMAPS),
                        help="colour map of the overlays (default turbo; cividis or viridis for "
                             "colour-vision deficiency)")
    parser.add_argument("--alpha", type=float, default=0.45, help="heat-map opacity 0..1")
    parser.add_argument("--contour", action="store_true",
                        help="outline the Otsu region (DT Grad-CAM: its own mask)")
    parser.add_argument("--options", help='per-method options as JSON, e.g. {"dt_gradcam": {"n": 8}}')
    parser.add_argument("--weights-dir", type=Path, help="model registry folder (default: weights/)")
    parser.add_argument("--frame", type=int, help="DICOM/TIFF frame (default: middle frame)")
    return parser


def write_outputs(
    result: Explanation, out: Path, stem: str, *, cmap: str = "turbo", alpha: float = 0.45,
    contour: bool = False,
) -> tuple[dict[str, str], str]:
    """Write one overlay per method and the grid; returns ({method: file}, grid file)."""
    if result.image is None:
        raise ValueError("the explanation carries no image to draw on")
    files = {}
    for name, cam in result.maps.items():
        outline = ("mask" if cam.mask is not None else "otsu") if contour else None
        if cam.flat:
            outline = None
        path = save_png(out / f"{stem}_{name}.png",
                        overlay(result.image, cam, cmap=cmap, alpha=alpha, contour=outline))
        files[name] = str(path)
    grid_path = save_png(out / f"{stem}_grid.png",
                         grid(result.image, result.maps, cmap=cmap, alpha=alpha,
                              contour="otsu" if contour else None))
    return files, str(grid_path)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input or no model)."""
    args = _parser().parse_args(argv)
    from imaging import ImageInputError, load_path
    from models.registry import ModelUnavailable
    from models.route import route_and_load
    from xai.engine import explain_loaded, resolve_methods

    if not 0.0 <= args.alpha <= 1.0:
        return fail("--alpha must be between 0 and 1")
    try:
        options = parse_options(args.options)
        image = load_path(args.path, frame=args.frame)
        routing, loaded = route_and_load(image, args.modality, args.weights_dir, args.task)
        modality = routing.modality
        methods = resolve_methods(args.methods, loaded.arch.stage_layers)
        result = explain_loaded(loaded, image.rgb, methods=methods, target=args.target,
                                options=options)
        files, grid_file = write_outputs(result, args.out, args.path.stem, cmap=args.cmap,
                                         alpha=args.alpha, contour=args.contour)
    except (CliError, ImageInputError, ModelUnavailable, ValueError, OSError) as exc:
        return fail(exc)
    if args.json:
        print(json.dumps({
            "label": result.label, "confidence": result.confidence,
            "target": result.target_label, "modality": modality, "task": loaded.card.task,
            "model": loaded.card.name,
            "modality_source": routing.source, "warnings": routing.warnings,
            "pass_ms": result.pass_ms, "grid": grid_file,
            "methods": {name: {"ms": cam.ms, "file": files[name], "flat": cam.flat,
                               "layer": cam.layer, "label": cam.label, "info": cam.info}
                        for name, cam in result.maps.items()},
        }))
        return 0
    for warning in routing.warnings:
        print(f"WARNING: {warning}")
    print(f"{result.label}  {result.confidence:.1%}  (explaining {result.target_label!r}; "
          f"{loaded.card.name}, {modality}; shared pass {result.pass_ms:.0f} ms)")
    for name, cam in result.maps.items():
        flag = "  flat" if cam.flat else ""
        print(f"  {cam.label:<26} {cam.ms:8.1f} ms  {files[name]}{flag}")
    print(f"  grid: {grid_file}")
    print("Research tool, not a diagnosis.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
