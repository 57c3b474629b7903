"""``python -m models.batch``: predict every image of a study or archive, rank, explain the top.

    python -m models.batch INPUT --out DIR [--modality M] [--task T] [--every N] [--frames all|middle]
        [--rank-by CLASS] [--explain-top K] [--methods a,b] [--batch-size B] [--workers W]
        [--no-views] [--no-router] [--restart] [--quiet] [--weights-dir DIR] [--device D]
    torchrun --nnodes N --nproc_per_node P -m models.batch INPUT --out DIR ...

INPUT: a folder (recursive), a CSV with a ``path`` column, a .zip, a video file or a DICOM
directory. Writes ``DIR/results.csv`` (one row per image; unreadable inputs are rows with an
``error``), ``DIR/summary.html`` and with ``--explain-top`` the maps in ``DIR/maps/``. Killed,
it resumes when run again with the same arguments. Bad input: exit code 2 and one line
``error: <message>`` on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from imaging import MODALITIES
from models.card import TASKS
from models.cli import OneLineParser, fail

__all__ = ["main"]


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="python -m models.batch", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Predict every image of a study or archive, rank them, explain the top "
                    "ones.\nKilled, it resumes when run again with the same arguments.",
        epilog="examples:\n"
               "  python -m models.batch study.mp4 --out triage --every 5 --rank-by bleeding "
               "--explain-top 20\n"
               "  python -m models.batch dicom_dir/ --out triage --frames middle\n"
               "  torchrun --nproc_per_node 2 -m models.batch archive.zip --out triage\n"
               "Research tool, not a diagnosis.")
    parser.add_argument("input", type=Path, help="folder, CSV of paths, .zip, video or DICOM directory")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: results.csv, summary.html, maps/, and the resume "
                             "journal parts/")
    parser.add_argument("--modality", choices=MODALITIES,
                        help="insist on a modality (default: the DICOM tag, else the router)")
    parser.add_argument("--task", choices=sorted(TASKS),
                        help="insist on a task, e.g. colonoscopy-polyp (default: the router's)")
    parser.add_argument("--every", type=int, default=1, help="video: every N-th frame (default 1)")
    parser.add_argument("--frames", choices=("all", "middle"), default="all",
                        help="multi-frame DICOM/TIFF: a row per frame (default) or the middle frame")
    parser.add_argument("--rank-by", metavar="CLASS",
                        help="sort rows by this class's probability, highest first")
    parser.add_argument("--explain-top", type=int, default=0, metavar="K",
                        help="draw heat maps of the K top-ranked images (needs --rank-by)")
    parser.add_argument("--methods", help="maps for --explain-top, comma-separated (default: "
                                          "the app's Grad-CAM, HiResCAM and HayCAM+)")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="input rows per forward pass, an image with its test-time views "
                             "being 4 (default 4, fastest on a CPU; raise it on a GPU); part of "
                             "the run's identity")
    parser.add_argument("--workers", type=int,
                        help="decoding processes (default: cores per process - 1, at most 4)")
    parser.add_argument("--no-views", action="store_true",
                        help="skip the 3 test-time views: 4x less compute, 'uncertain' from "
                             "entropy alone")
    parser.add_argument("--no-router", action="store_true",
                        help="with --modality: skip the modality router (no routing warnings)")
    parser.add_argument("--restart", action="store_true",
                        help="discard DIR's earlier results instead of resuming")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--weights-dir", type=Path, help="registry folder (default: weights/)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: auto)")
    return parser


class _Progress:
    """A tqdm bar with rate and ETA on rank 0, on stderr."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int | None, rank: int) -> Any:
        if rank:
            return None
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit="img", desc="predict",
                        dynamic_ncols=True, mininterval=1.0)
        return self.update

    def update(self, images: int) -> None:
        self.bar.update(images)
        if self.bar.total is not None and self.bar.n > self.bar.total:
            self.bar.total = self.bar.n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input or no model)."""
    args = _parser().parse_args(argv)
    for flag, value, least in (("--every", args.every, 1), ("--batch-size", args.batch_size, 1),
                               ("--explain-top", args.explain_top, 0),
                               ("--workers", 0 if args.workers is None else args.workers, 0)):
        if value < least:
            return fail(f"{flag} must be {least} or more")
    from models.batch.pipeline import BatchOptions, default_workers
    from models.batch.run import RunConflict, run_batch
    from models.batch.sources import InputError
    from models.registry import ModelUnavailable

    progress = _Progress()
    try:
        options = BatchOptions(
            modality=args.modality, task=args.task, weights_dir=args.weights_dir,
            router=not args.no_router,
            views=not args.no_views, all_frames=args.frames == "all",
            batch_size=args.batch_size,
            workers=default_workers() if args.workers is None else args.workers,
            device=args.device)
        report = run_batch(args.input, args.out, options, every=args.every,
                           rank_by=args.rank_by, explain_top=args.explain_top,
                           methods=args.methods.split(",") if args.methods else None,
                           restart=args.restart, progress=None if args.quiet else progress)
    except (InputError, RunConflict, ModelUnavailable, ValueError, OSError) as exc:
        return fail(exc)
    finally:
        progress.close()
    if report is None:
        return 0
    print(f"{report.images} images: {report.images - report.errors} predicted, "
          f"{report.errors} not (unreadable, of no known modality, or without a model), "
          f"{report.flagged} with a warning "
          f"({report.seconds:.0f} s)")
    print(f"results: {report.results}\nsummary: {report.summary}"
          + (f"\nmaps: {len(report.maps)} files in {report.maps[0].parent}" if report.maps else ""))
    print("Research tool, not a diagnosis.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
