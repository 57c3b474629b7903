"""Train a classifier and register it in the weight registry.

``python -m training.train --data DIR [DIR ...] (--modality M [--task T] | --router) [--recipe R] ...``

``DIR`` is an ImageFolder tree, a CSV (path,label[,group]) or ``DIR=LABEL`` (every image under
``DIR`` has class ``LABEL``). ``--task`` names what the model is for (``models.card.TASKS``;
default: the modality's first task); ``--default`` makes it the default of its (modality, task).
Every image is decoded and preprocessed once (as inference does) into memory; the split is
stratified and near-duplicate aware over the union of the sources (see :mod:`training.data`). Regimes: ``scratch``, ``feature`` (frozen backbone: features computed
once, the head trained on the cache) and ``finetune`` (optional head warm-up on the cache, then
all layers). Each epoch is checkpointed (``--resume`` continues), metrics go to ``metrics.csv``
and TensorBoard in the checkpoint folder, training stops early when validation loss has not
improved for ``patience`` epochs. At the end the best epoch is rounded to fp16, calibrated
(temperature on validation), evaluated on the test split, written with its card to ``--out``
(default ``weights/<task or modality>-<arch>``) and given its trust signals
(:mod:`training.trust`).

Distributed: ``torchrun --nproc_per_node N -m training.train ...`` (gloo on CPU, nccl on GPU);
each process trains on its shard, rank 0 logs and saves. This module holds only the command
line (``--help`` stays fast); the run itself is :mod:`training.loop`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from imaging import MODALITIES, PREPROCESSING
from models.card import TASKS
from training.recipes import CHOICES, RECIPES, Recipe, get_recipe

__all__ = ["TIGHT_HAMMING", "build_parser", "main", "resolve_recipe"]

_NOT_FLAGS = {"name", "source", "notes"}
_FLAG_TYPES: dict[str, Callable[[str], Any]] = {
    "ratios": lambda text: tuple(float(v) for v in text.replace(",", ":").split(":")),
    "input_size": int,
}
_FLAG_CHOICES = {**CHOICES, "preprocessing": PREPROCESSING}
_RECIPE_HELP = {
    "regime": "finetune (all layers from --train-from on), feature (frozen backbone, head only) "
              "or scratch (random init)",
    "preprocessing": "resize, brain_mri (crop to the brain + bilateral filter, then resize) or "
                     "mask_frame (resize, then black out a colonoscopy frame's furniture: "
                     "outside the inscribed circle, the lower-left box, the left text strip)",
    "input_size": "side of the square input in pixels (default: the architecture's)",
    "normalisation": "arch (the architecture's mean/std), imagenet or symmetric ([-1, 1])",
    "epochs": "fine-tuning epochs, counted after the --warmup-epochs head-only epochs",
    "batch_size": "images per optimiser step",
    "optimizer": "adam, adamw or sgd",
    "lr": "learning rate of the fine-tuning (or feature) stage",
    "head_lr": "learning rate of the head-only warm-up epochs",
    "weight_decay": "weight decay",
    "momentum": "SGD momentum",
    "schedule": "learning-rate schedule over the fine-tuning epochs: constant, step or cosine",
    "lr_warmup_epochs": "linear learning-rate warm-up epochs (from lr/10) before the schedule",
    "step_size": "epochs between decays of the step schedule",
    "gamma": "decay factor of the step schedule",
    "dropout": "dropout before the new linear head",
    "warmup_epochs": "head-only epochs on cached backbone features before fine-tuning "
                     "(not counted in --epochs)",
    "train_from": "dotted module name: fine-tune only parameters from it on (e.g. blocks.4); "
                  "empty: all layers",
    "patience": "stop after this many fine-tuning epochs without a lower validation loss",
    "balance": "class balance: weighted loss, weighted sampler or none",
    "label_smoothing": "label smoothing of the cross-entropy (0 to 1)",
    "rotation": "random rotation, +- degrees",
    "shift": "random shift, +- fraction of the side",
    "hflip": "random horizontal flips",
    "vflip": "random vertical flips",
    "brightness_alpha": "contrast jitter: alpha ~ U(1 - a, 1 + a) in g = alpha f + beta",
    "brightness_beta": "brightness jitter: beta ~ U(-b, b) on the [0, 1] scale",
    "crop_scale": "random resized crop keeping this share of the area or more (1: off)",
    "gamma_jitter": "gamma jitter: f ** g with log g ~ U(-j, j) (0: off)",
    "blur": "share of training images Gaussian-blurred (sigma 0.1-1.5)",
    "sharpen": "sharpness jitter S: factor s with log s ~ U(-log S, log S), s > 1 sharper "
               "(e.g. 4; 0: off)",
    "jpeg": "JPEG re-encoding of every training image at a random quality from Q to 95 "
            "(e.g. 30; 0: off)",
    "auto_augment": "trivial: TrivialAugment per image (photometric + geometric; not for "
                    "colour-diagnostic images); none",
    "region_weight": "weight of the attention loss pulling each annotated image's class "
                     "activation map toward its --region-masks mask (default with masks: 1)",
    "ema": "decay per fine-tuning step of an exponential moving average of the weights, which "
           "validation, early stopping and the exported model use (e.g. 0.98; 0: off)",
    "ratios": "train:val:test shares of the grouped split, e.g. 8:1:1",
    "folds": "K > 0: K-fold split, --fold is the test fold and the next one validation",
    "fold": "test fold index for --folds",
    "val_folds": "K > 0: keep the --ratios test split, validate on one of K grouped folds of the "
                 "rest (run each --val-fold, then python -m training.crossval RUN...)",
    "val_fold": "validation fold index for --val-folds",
}
# Hamming threshold when ids already group images: join near-identical copies only, not chains
# of merely similar frames (measured on the chest X-ray union: 24 bits chained 272 images).
TIGHT_HAMMING = 8
DEFAULT_HAMMING = 24  # training.data.GroupRule.max_hamming (not imported: it loads torch)
DEFAULT_HASH_BITS = 16  # training.data.GroupRule.hash_bits


def build_parser() -> argparse.ArgumentParser:
    """The CLI; every :class:`Recipe` field is also a flag that overrides the preset."""
    parser = argparse.ArgumentParser(prog="python -m training.train",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", action="extend", required=True,
                        help="class folders or CSVs; several sources make one grouped split "
                             "over their union")
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--modality", choices=MODALITIES, help="what the model reads")
    kind.add_argument("--router", action="store_true",
                      help="train a modality router: its classes are modalities, or tasks where "
                           "a modality has several (give sources as DIR=MODALITY or DIR=TASK)")
    parser.add_argument("--task", choices=sorted(TASKS),
                        help="what the model is for (default: the modality's first task)")
    parser.add_argument("--recipe", default="default", choices=sorted(RECIPES),
                        help="preset of hyper-parameters (see training/recipes.py)")
    parser.add_argument("--out", type=Path,
                        help="registry folder (default weights/<task, else modality>-<arch>)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out model")
    parser.add_argument("--checkpoint-dir", type=Path,
                        help="checkpoints, metrics.csv, TensorBoard (default checkpoints/<out name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, init and augmentation")
    parser.add_argument("--pretrained", help="imagenet, none or a state-dict path "
                                             "(default: imagenet, none for --regime scratch)")
    parser.add_argument("--group-column", help="CSV column whose equal values stay in one split")
    parser.add_argument("--group-pattern", help="regex on file names; equal matches stay together "
                                                "(e.g. a patient id)")
    parser.add_argument("--max-hamming", type=int,
                        help="dHash bits that may differ for near-duplicates; -1: no hashing "
                             f"(default {DEFAULT_HAMMING}, or {TIGHT_HAMMING} with a group "
                             "column or pattern: then only near-identical images are joined)")
    parser.add_argument("--hash-bits", type=int, default=DEFAULT_HASH_BITS, help="dHash side")
    parser.add_argument("--min-correlation", type=float,
                        help="also join images whose 32x32 grey thumbnails (over the pixels the "
                             "preprocessing keeps) correlate above this, e.g. 0.93 for video "
                             "frames (default: off)")
    parser.add_argument("--max-per-class", type=int, help="use only the first N images per class")
    parser.add_argument("--default", action="store_true",
                        help="make this the default model of its modality and task (other "
                             "models of both in the registry folder stop being default)")
    parser.add_argument("--region-masks", type=Path, nargs="+", action="extend", default=[],
                        help="folders of region masks (white lesion on black) named like their "
                             "images (the stem; searched recursively): training pulls those "
                             "images' class activation maps toward the masks (--region-weight)")
    parser.add_argument("--data-name", help="dataset name for the card (default: folder names)")
    parser.add_argument("--data-licence", default="", help="dataset licence for the card")
    parser.add_argument("--no-test-time-crops", action="store_true",
                        help="the exported model decides on the image alone (default: on the "
                             "image and the centre crops that lower its validation log-loss)")
    parser.add_argument("--external", type=Path, nargs="+",
                        help="sources never trained on (e.g. another hospital's split): the "
                             "exported model is evaluated on them and the card records it as "
                             "external metrics")
    parser.add_argument("--device", help="cpu, cuda, mps (default: auto)")
    parser.add_argument("--threads", type=int, help="torch threads (default: cores / processes)")
    parser.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                        help="bf16 autocast for training (auto: where the hardware has it)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels-last memory format (faster convolutions on CPU)")
    overrides = parser.add_argument_group("recipe overrides (default: the recipe's value)")
    overrides.add_argument("--arch", help="architecture registered in models.zoo, e.g. "
                                           "tf_efficientnet_lite0 (a wrong name lists them all)")
    for f in fields(Recipe):
        if f.name in _NOT_FLAGS | {"arch"}:
            continue
        flag = "--" + f.name.replace("_", "-")
        example = getattr(RECIPES["default"], f.name)
        help_text = _RECIPE_HELP[f.name]
        if isinstance(example, bool):
            overrides.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_text)
        elif f.name in _FLAG_CHOICES:
            overrides.add_argument(flag, choices=_FLAG_CHOICES[f.name], help=help_text)
        else:
            overrides.add_argument(flag, type=_FLAG_TYPES.get(f.name, type(example)), help=help_text)
    return parser


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The preset with the command line's overrides applied."""
    names = {f.name for f in fields(Recipe)} - _NOT_FLAGS
    return get_recipe(args.recipe).override(**{n: getattr(args, n) for n in names})


def main(argv: list[str] | None = None) -> int:
    """Run training; 0 on success, 2 with one ``error:`` line for bad input."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from training.loop import run  # torch and the models load only now

    try:
        return run(args, argv)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
