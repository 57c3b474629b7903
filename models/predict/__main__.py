"""``python -m models.predict``: the model's answer for one image.

    python -m models.predict PATH [--modality M] [--task T] [--json] [--frame N] [--window C,W]
                             [--weights-dir DIR]

Loads the image, picks the model for the modality and task (the flags, else the DICOM Modality
tag, else the modality router; see :mod:`models.route`) and prints warnings first, then the
label, confidence and all class probabilities. Bad input, or an image of no known modality: exit
code 2 and one line ``error: <message>`` on stderr. Torch loads after the arguments are read, so
``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from imaging import MODALITIES, Window
from models.card import TASKS
from models.cli import OneLineParser

__all__ = ["main"]


def _parse_window(text: str) -> Window:
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("window must be CENTER,WIDTH, e.g. 40,400") from None
    return Window(center, width)


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m models.predict", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, help="PNG, JPEG, BMP, TIFF or DICOM file")
    parser.add_argument("--modality", choices=MODALITIES,
                        help="insist on a modality (default: the DICOM tag, else the router)")
    parser.add_argument("--task", choices=sorted(TASKS),
                        help="insist on a task, e.g. colonoscopy-polyp (default: the router's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--frame", type=int, help="DICOM/TIFF frame (default: middle frame)")
    parser.add_argument("--window", type=_parse_window, help="DICOM window CENTER,WIDTH")
    parser.add_argument("--weights-dir", type=Path, help="registry folder (default: weights/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input or no model)."""
    args = _parser().parse_args(argv)
    from imaging import ImageInputError, load_path
    from models.predict.inference import predict
    from models.registry import ModelUnavailable
    from models.route import route_and_load

    try:
        image = load_path(args.path, frame=args.frame, window=args.window)
        routing, loaded = route_and_load(image, args.modality, args.weights_dir, args.task)
        result = predict(loaded, image.rgb)
    except (ImageInputError, ModelUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warnings = routing.warnings + result.warnings
    if args.json:
        print(json.dumps({"modality": routing.modality, "task": loaded.card.task,
                          "model": loaded.card.name, **asdict(result),
                          "modality_source": routing.source,
                          "modality_confidence": routing.confidence, "warnings": warnings}))
        return 0
    for warning in warnings:
        print(f"WARNING: {warning}")
    print(f"{result.label}  {result.confidence:.1%}  ({loaded.card.name}, {routing.modality} "
          f"from {routing.source}, {result.latency_ms:.0f} ms)"
          + ("  [not reliable]" if warnings else ""))
    for name, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} {p:7.2%}")
    print("Research tool, not a diagnosis.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
