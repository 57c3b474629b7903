"""The training run behind ``python -m training.train`` (see that module for the command line).

Data is listed, decoded once and split; the model is built, trained (head warm-up on cached
features, then fine-tuning), checkpointed every epoch, calibrated, evaluated, exported to the
registry and given its trust signals. Single process or under ``torchrun``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from imaging import MODALITIES
from imaging.preprocess import kept_region
from models.card import CARD_FILE, DEFAULT_TASKS, ROUTER_MODALITY, TASKS, ModelCard, code_version
from models.device import Distributed
from models.predict import view_logits
from models.registry import list_cards
from models.zoo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SYMMETRIC_MEAN,
    SYMMETRIC_STD,
    build_model,
    get_arch,
    parameter_count,
)
from training.attention import RegionSupervision
from training.augment import Augment, normalise
from training.calibrate import served_scores, trained_flips
from training.data import (
    Dataset,
    GroupRule,
    decode_images,
    decode_regions,
    dhash,
    find_region_masks,
    list_sources,
    make_split,
    sha256_of_files,
    source_location,
    thumbnails,
)
from training.evaluate import record_external
from training.export import export_model, round_to_half
from training.metrics import classification_report
from training.recipes import Recipe
from training.shift import apply_shift
from training.train import TIGHT_HAMMING, resolve_recipe
from training.trust import fit_trust

__all__ = [
    "Distributed",
    "WeightedDistributedSampler",
    "autocast",
    "lr_scheduler",
    "predict_sharded",
    "run",
    "train_epoch",
]


class WeightedDistributedSampler(DistributedSampler):
    """Class-balanced sampling with replacement, sharded like :class:`DistributedSampler`."""

    def __init__(self, weights: torch.Tensor, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(range(len(weights)), num_replicas=num_replicas, rank=rank, seed=seed)
        self.weights = weights.double()

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True,
                                  generator=generator).tolist()
        return iter(drawn[self.rank:self.total_size:self.num_replicas])


def autocast(device: torch.device, mode: str) -> Callable[[], AbstractContextManager[Any]]:
    """A context factory: bf16 autocast when ``mode`` asks for it or ``auto`` finds it fast.

    ``auto`` uses bf16 on CUDA GPUs that support it and on CPUs with native bf16 (AMX or
    AVX512-BF16); elsewhere bf16 is emulated and slower than fp32 (6x on the AMD EPYC dev box).
    """
    if mode == "auto":
        if device.type == "cuda":
            enabled = torch.cuda.is_bf16_supported()
        else:
            try:
                flags = Path("/proc/cpuinfo").read_text()
            except OSError:
                flags = ""
            enabled = device.type == "cpu" and ("amx_bf16" in flags or "avx512_bf16" in flags)
    else:
        enabled = mode == "bf16"
    if not enabled:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def predict_sharded(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                    batch_size: int, run: Distributed) -> torch.Tensor:
    """``fn`` over ``inputs`` in batches, split across processes and gathered in order (CPU)."""
    mine = torch.arange(run.rank, len(inputs), run.world)
    outputs = [fn(inputs[mine[i:i + batch_size]]).float().cpu()
               for i in range(0, len(mine), batch_size)]
    local = torch.cat(outputs) if outputs else torch.empty(0)
    if run.world == 1:
        return local
    gathered: list[Any] = [None] * run.world
    dist.all_gather_object(gathered, (mine, local))
    result = torch.empty((len(inputs), *next(o for _, o in gathered if len(o)).shape[1:]))
    for index, values in gathered:
        if len(index):
            result[index] = values
    return result


def train_epoch(module: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                indices: list[int], transform: Callable[[torch.Tensor], torch.Tensor],
                optimizer: torch.optim.Optimizer, loss_fn: nn.Module, batch_size: int, *,
                device: torch.device, channels_last: bool,
                amp: Callable[[], AbstractContextManager[Any]], desc: str = "",
                show: bool = True, regions: torch.Tensor | None = None,
                supervision: RegionSupervision | None = None,
                region_weight: float = 0.0,
                after_step: Callable[[], None] | None = None) -> dict[str, float]:
    """One pass over ``indices`` (this process's shard); mean loss, accuracy and images/s;
    ``after_step`` is called after every optimiser step (a weight average's update).

    With ``regions`` (masks aligned with ``inputs``; ``transform`` an :class:`Augment`) and
    ``supervision`` (entered), ``region_weight`` times its loss is added to the
    classification loss, and its mean is reported as ``region_loss``."""
    module.train()
    for norm in module.modules():  # frozen BatchNorm layers keep their running statistics
        if isinstance(norm, nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in norm.parameters()):
            norm.eval()
    if len(indices) % batch_size == 1 and len(indices) > 1:
        indices = indices[:-1]  # a lone last sample breaks BatchNorm
    supervised = regions is not None and supervision is not None and region_weight > 0
    total_loss, total_region, correct, seen = 0.0, 0.0, 0, 0
    start = time.perf_counter()
    batches = range(0, len(indices), batch_size)
    for i in tqdm(batches, desc=desc, disable=not show, leave=False, mininterval=2 if sys.stderr.isatty() else 60):
        index = torch.tensor(indices[i:i + batch_size])
        if supervised:
            x, region = transform.with_regions(inputs[index], regions[index])  # type: ignore[attr-defined]
        else:
            x, region = transform(inputs[index]), None
        x = x.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = labels[index].to(device)
        with amp():
            logits = module(x)
            loss = loss_fn(logits.float(), y)
            if region is not None and supervision is not None:
                region_loss = supervision.loss(y, region.to(device))
                loss = loss + region_weight * region_loss
                total_region += region_loss.item() * len(y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        total_loss += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1),
            "images_per_s": seen / seconds if seconds else 0.0, "seconds": seconds,
            **({"region_loss": total_region / max(seen, 1)} if supervised else {})}


def _freeze_before(model: nn.Module, first: str) -> None:
    """Freeze every parameter defined before module ``first`` (dotted name)."""
    names = [n for n, _ in model.named_parameters()]
    starts = [i for i, n in enumerate(names) if n.startswith(first + ".")]
    if not starts:
        raise SystemExit(f"error: --train-from {first!r} names no module with parameters")
    for _, p in list(model.named_parameters())[:starts[0]]:
        p.requires_grad_(False)


def _optimizer(params: list[nn.Parameter], recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=recipe.weight_decay)


def lr_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The recipe's schedule over ``epochs``, after ``lr_warmup_epochs`` of linear warm-up."""
    lr = torch.optim.lr_scheduler
    warm = min(recipe.lr_warmup_epochs, max(epochs - 1, 0))
    if recipe.schedule == "step":
        main: lr.LRScheduler = lr.StepLR(optimizer, recipe.step_size, recipe.gamma)
    elif recipe.schedule == "cosine":
        main = lr.CosineAnnealingLR(optimizer, max(epochs - warm, 1))
    else:
        main = lr.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warm:
        return main
    return lr.SequentialLR(optimizer, [lr.LinearLR(optimizer, 0.1, 1.0, total_iters=warm), main],
                           milestones=[warm])


def _normalisation(recipe: Recipe, arch_mean: tuple[float, ...], arch_std: tuple[float, ...]
                   ) -> tuple[list[float], list[float]]:
    table = {"arch": (arch_mean, arch_std), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
             "symmetric": (SYMMETRIC_MEAN, SYMMETRIC_STD)}
    mean, std = table[recipe.normalisation]
    return list(mean), list(std)


def _command(argv: list[str], world: int) -> str:
    launcher = (f"torchrun --nproc_per_node {world} -m training.train" if world > 1
                else "python -m training.train")
    return f"{launcher} {shlex.join(argv)}"


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(key for row in history for key in row))  # head rows lack some
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _data_record(args: argparse.Namespace, dataset: Dataset,
                 masks: list[Path | None]) -> dict[str, Any]:
    """The card's ``data``: every source, with its own image count, and the region masks."""
    sources = [{"source": str(d), "format": "csv" if source_location(d).is_file() else "folder",
                "images": sum(f.startswith(_source_prefix(d, dataset)) for f in dataset.files)}
               for d in args.data]
    names = [(d.parent if d.is_file() else d).name for d in map(source_location, args.data)]
    return {"name": args.data_name or " + ".join(names), "source": " ".join(map(str, args.data)),
            "sources": sources, "licence": args.data_licence,
            "format": sources[0]["format"] if len(sources) == 1 else "several",
            "images": len(dataset.files), "counts": dataset.counts(),
            "max_per_class": args.max_per_class,
            **({"region_masks": {"folders": [str(f) for f in args.region_masks],
                                 "images": sum(m is not None for m in masks)}} if masks else {})}


def _source_prefix(source: Path, dataset: Dataset) -> str:
    """The prefix that files of ``source`` carry in a multi-source ``dataset`` ('' for one)."""
    source = source_location(source)
    folder = (source.parent if source.is_file() else source).resolve()
    if folder == dataset.root.resolve():
        return ""
    return folder.relative_to(dataset.root.resolve()).as_posix() + "/"


def _check_out(out: Path, force: bool, resume: bool) -> None:
    """Refuse to overwrite a registered model unless ``--force`` (or ``--resume``) says so."""
    if (out / CARD_FILE).exists() and not (force or resume):
        raise ValueError(f"{out} already holds a model; pass --force to overwrite it")


def _make_sole_default(out: Path, modality: str, task: str) -> None:
    """Unmark every other default model of ``modality`` and ``task`` in ``out``'s registry
    folder (a card without a task field has its modality's first task)."""
    for folder, card in list_cards(out.parent):
        if folder.resolve() != out.resolve() and isinstance(card, ModelCard) \
                and (card.modality, card.task) == (modality, task) and card.default:
            replace(card, default=False).write(folder)
            print(f"{folder.name} is no longer the default {modality} model for {task}")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Train as ``args`` (parsed by :func:`training.train.build_parser`) say; returns 0."""
    if args.router and args.task:
        raise ValueError("--task is for diagnosis models; a router's classes name the tasks")
    if args.router:
        args.modality = ROUTER_MODALITY
    task = "" if args.router else args.task or DEFAULT_TASKS[args.modality]
    if not args.router and TASKS[task].modality != args.modality:
        raise ValueError(f"task {task} reads {TASKS[task].modality} images, not {args.modality}")
    recipe = resolve_recipe(args)
    if args.region_masks and not recipe.region_weight:
        recipe = recipe.override(region_weight=1.0)
    if recipe.region_weight and not args.region_masks:
        raise ValueError("--region-weight needs --region-masks (the masks to pull the maps to)")
    if args.region_masks and recipe.auto_augment != "none":
        raise ValueError("TrivialAugment shears and shifts pixels that region masks cannot "
                         "follow: drop --auto-augment or --region-masks")
    run = Distributed(args.device)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", run.world))
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    log = print if run.main else (lambda *a, **k: None)

    spec = get_arch(recipe.arch)
    size = recipe.input_size or spec.input_size
    mean, std = _normalisation(recipe, spec.mean, spec.std)
    family = "router" if args.router else args.task or args.modality
    out = args.out or Path("weights") / f"{family}-{recipe.arch}"
    ckpt_dir = args.checkpoint_dir or Path("checkpoints") / out.name
    pretrained = args.pretrained or ("none" if recipe.regime == "scratch" else "imagenet")
    if recipe.regime == "scratch" and pretrained != "none":
        raise SystemExit("error: --regime scratch trains from random weights; drop --pretrained")

    # Data: list, decode once, hash, split.
    t0 = time.perf_counter()
    _check_out(out, args.force, args.resume)
    dataset = list_sources(args.data, group_column=args.group_column, max_per_class=args.max_per_class)
    if args.router and not set(dataset.classes) <= {*MODALITIES, *TASKS}:
        raise ValueError(f"a router's classes must be modalities ({', '.join(MODALITIES)}) or "
                         f"tasks ({', '.join(TASKS)}); got {dataset.classes}")
    images = decode_images(dataset.paths, recipe.preprocessing, size, threads=torch.get_num_threads())
    max_hamming = args.max_hamming if args.max_hamming is not None else (
        TIGHT_HAMMING if args.group_column or args.group_pattern else GroupRule.max_hamming)
    rule = GroupRule(max_hamming, args.hash_bits, args.group_column, args.group_pattern,
                     args.min_correlation)
    hashes = dhash(images, rule.hash_bits) if rule.max_hamming >= 0 else None
    thumbs = (thumbnails(images, kept_region(recipe.preprocessing, size))
              if rule.min_correlation is not None else None)
    split = make_split(dataset, hashes, rule, seed=args.seed, ratios=recipe.ratios,
                       folds=recipe.folds, fold=recipe.fold, val_folds=recipe.val_folds,
                       val_fold=recipe.val_fold, thumbs=thumbs)
    if not len(split.val):
        raise SystemExit("error: the validation split is empty; use more images or other ratios")
    labels = torch.from_numpy(dataset.labels)
    masks = find_region_masks(dataset.paths, args.region_masks) if args.region_masks else []
    regions = (decode_regions(dataset.paths, masks, recipe.preprocessing, size,
                              threads=torch.get_num_threads()) if masks else None)
    if masks and not any(masks):
        raise ValueError(f"no image has a mask of the same name in "
                         f"{' '.join(map(str, args.region_masks))}")
    log(f"data: {len(dataset.files)} images, {len(dataset.classes)} classes {dataset.classes}, "
        f"decoded at {size}px ({recipe.preprocessing}) in {time.perf_counter() - t0:.0f} s; "
        f"split {split.record['counts']}; {split.record['groups']} groups "
        f"(largest {split.record['largest_group']}: {split.record['largest_group_counts']})"
        + (f"; region masks for {sum(m is not None for m in masks)} images "
           f"({sum(masks[i] is not None for i in split.train)} in training)" if masks else ""))

    # Model, stages, loss.
    model = build_model(recipe.arch, len(dataset.classes),
                        pretrained=None if pretrained == "none" else pretrained, dropout=recipe.dropout)
    model.to(run.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    head_name = spec.head or "fc"
    head = model.get_submodule(head_name)
    warmup = recipe.warmup_epochs if recipe.regime == "finetune" else 0
    total_epochs = warmup + recipe.epochs
    amp = autocast(run.device, args.amp)
    y_train = labels[split.train]
    class_weight = torch.tensor(compute_class_weight("balanced", classes=np.arange(len(dataset.classes)),
                                                     y=y_train.numpy()), dtype=torch.float32)
    class_weight = torch.nan_to_num(class_weight, posinf=0.0)
    loss_fn = nn.CrossEntropyLoss(weight=class_weight.to(run.device) if recipe.balance == "loss" else None,
                                  label_smoothing=recipe.label_smoothing)
    if recipe.balance == "sampler":
        sampler: DistributedSampler = WeightedDistributedSampler(class_weight[y_train], run.world,
                                                                 run.rank, args.seed)
    else:
        sampler = DistributedSampler(range(len(split.train)), num_replicas=run.world,
                                     rank=run.rank, shuffle=True, seed=args.seed)
    augment = Augment(recipe, mean, std)

    def to_device(x: torch.Tensor) -> torch.Tensor:
        x = normalise(x, mean, std).to(run.device)
        return x.contiguous(memory_format=torch.channels_last) if args.channels_last else x

    supervision = None
    if masks:  # entered per fine-tuning epoch; checked on one image before any training
        supervision = RegionSupervision(model, spec.target_layer, head_name)
        supervision.check(to_device(images[:1]), labels[:1].to(run.device))

    @torch.no_grad()
    def logits_of(index: np.ndarray, net: nn.Module | None = None) -> torch.Tensor:
        """Logits of ``images[index]`` by ``net`` (default: the model) under the training
        autocast (validation per epoch)."""
        net = net or model
        net.eval()
        with amp():
            return predict_sharded(lambda x: net(to_device(x)), images[index], recipe.batch_size, run)

    @torch.no_grad()
    def served_view_logits(index: np.ndarray, crops: Sequence[float], flips: Sequence[str],
                           shift: str | None) -> torch.Tensor:
        """``(n, 1 + len(crops) + len(flips), C)`` logits of ``images[index]`` (under ``shift``),
        their centre crops and flips, in float32 as the app and evaluate run the model (the
        card's metrics)."""
        model.eval()
        return predict_sharded(
            lambda x: view_logits(model, to_device(apply_shift(shift, x) if shift else x), crops,
                                  flips),
            images[index], recipe.batch_size, run)

    features: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def cache_features() -> None:
        captured: list[torch.Tensor] = []
        hook = head.register_forward_pre_hook(lambda _m, a: captured.append(a[0].flatten(1)))

        def backbone(x: torch.Tensor) -> torch.Tensor:
            captured.clear()
            model(to_device(x))
            return captured[0]

        model.eval()
        start = time.perf_counter()
        try:
            with amp():
                for name, index in (("train", split.train), ("val", split.val)):
                    features[name] = predict_sharded(backbone, images[index], recipe.batch_size, run)
        finally:
            hook.remove()
        log(f"feature cache: {len(split.train) + len(split.val)} images in "
            f"{time.perf_counter() - start:.0f} s, {features['train'].shape[1]} features each")

    # State (fresh or resumed).
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    last_path = ckpt_dir / "last.pt"
    fingerprint = {"recipe": {k: v for k, v in recipe.as_dict().items() if k not in ("epochs", "patience")},
                   "test_sha256": split.record["test_sha256"], "pretrained": pretrained,
                   "classes": dataset.classes,
                   **({"region_masks": sha256_of_files([str(m) for m in masks if m is not None])}
                      if masks else {})}
    for later_field in ("region_weight", "ema", "sharpen", "jpeg"):  # off: resume checkpoints from before the field
        if not getattr(recipe, later_field):
            del fingerprint["recipe"][later_field]
    state: dict[str, Any] = {"epoch": 0, "best_loss": float("inf"), "best_epoch": -1,
                             "best_model": None, "bad_epochs": 0, "history": [],
                             "command": _command(argv, run.world), "resumed": [],
                             "code_version": code_version()}
    if args.resume and last_path.exists():
        saved = torch.load(last_path, map_location="cpu", weights_only=True)
        if saved["fingerprint"] != fingerprint:
            raise SystemExit(f"error: {last_path} was written by a run with another recipe, split "
                             "or class list; use another --checkpoint-dir or drop --resume")
        model.load_state_dict(saved["model"])
        resumed = [*saved.get("resumed", []), f"{_command(argv, run.world)} (code {code_version()})"]
        state = {**saved, "command": saved.get("command", resumed[0]), "resumed": resumed,
                 "code_version": saved.get("code_version", code_version())}
        log(f"resumed from {last_path} after epoch {state['epoch']}")
    writer = None
    if run.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(ckpt_dir / "tb"), purge_step=state["epoch"])

    stage, trainer, optimizer, scheduler = "", nn.Module(), None, None
    averaged: AveragedModel | None = None
    stopped_early = state["bad_epochs"] >= recipe.patience  # resuming a run that had stopped
    for epoch in range(state["epoch"], state["epoch"] if stopped_early else total_epochs):
        wanted = "head" if recipe.regime == "feature" or epoch < warmup else "full"
        if wanted != stage:  # (re)build the optimiser for this stage
            stage = wanted
            for p in model.parameters():
                p.requires_grad_(stage == "full")
            if stage == "full" and recipe.train_from:
                _freeze_before(model, recipe.train_from)
            for p in head.parameters():
                p.requires_grad_(True)
            if stage == "head" and not features:
                cache_features()
            trainer = run.wrap(head if stage == "head" else model)
            params = [p for p in (head if stage == "head" else model).parameters() if p.requires_grad]
            stage_epochs = warmup if recipe.regime == "finetune" and stage == "head" else recipe.epochs
            warm = recipe.regime == "finetune" and stage == "head"
            optimizer = _optimizer(params, recipe, recipe.head_lr if warm else recipe.lr)
            scheduler = (lr_scheduler(optimizer, recipe.override(schedule="constant"), stage_epochs) if warm
                         else lr_scheduler(optimizer, recipe, stage_epochs))
            if state.get("optimizer") and state.get("stage") == stage:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            if stage == "full" and recipe.ema:  # torch's averaging: weights and BN statistics
                averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema),
                                         use_buffers=True)
                if state.get("averaged") and state.get("stage") == stage:
                    averaged.load_state_dict(state["averaged"])
        assert optimizer is not None and scheduler is not None
        sampler.set_epoch(epoch)
        torch.manual_seed(args.seed * 100_003 + epoch * 101 + run.rank)  # augmentation, dropout
        desc = f"epoch {epoch + 1}/{total_epochs} {stage}"
        if stage == "head":
            row = train_epoch(trainer, features["train"], y_train, list(sampler), nn.Identity(),
                              optimizer, loss_fn, recipe.batch_size, device=run.device,
                              channels_last=False, amp=amp, desc=desc, show=run.main)
            head.eval()
            with torch.no_grad():
                val_logits = head(features["val"].to(run.device)).float().cpu()
        else:
            with supervision or nullcontext():
                row = train_epoch(trainer, images[split.train], y_train, list(sampler), augment,
                                  optimizer, loss_fn, recipe.batch_size, device=run.device,
                                  channels_last=args.channels_last, amp=amp, desc=desc,
                                  show=run.main, supervision=supervision,
                                  regions=None if regions is None else regions[split.train],
                                  region_weight=recipe.region_weight,
                                  after_step=None if averaged is None
                                  else partial(averaged.update_parameters, model))
            val_logits = logits_of(split.val, net=None if averaged is None else averaged.module)
        scheduler.step()
        y_val = labels[split.val]
        val_loss = float(nn.functional.cross_entropy(val_logits, y_val))
        val_pred = val_logits.argmax(1)
        row = {"epoch": epoch + 1, "stage": stage, "lr": optimizer.param_groups[0]["lr"], **row,
               "val_loss": val_loss, "val_acc": float((val_pred == y_val).float().mean()),
               "val_balanced_acc": classification_report(y_val.numpy(), val_logits.softmax(1).numpy(),
                                                         dataset.classes)["balanced_accuracy"]}
        if stage == "full" and row["seconds"]:
            row["images_per_s"] *= run.world  # all processes together
        improved = val_loss < state["best_loss"] - 1e-6
        if improved:
            validated = model if averaged is None else averaged.module
            state.update(best_loss=val_loss, best_epoch=epoch + 1, bad_epochs=0,
                         best_model=copy.deepcopy({k: v.cpu() for k, v in validated.state_dict().items()}))
        elif stage == "full" or recipe.regime == "feature":
            state["bad_epochs"] += 1
        state["history"].append(row)
        state.update(epoch=epoch + 1, stage=stage, optimizer=optimizer.state_dict(),
                     scheduler=scheduler.state_dict(), fingerprint=fingerprint,
                     **({"averaged": averaged.state_dict()} if averaged is not None else {}))
        if run.main:
            log(f"{desc}: loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | val loss "
                f"{val_loss:.4f} acc {row['val_acc']:.3f} bal {row['val_balanced_acc']:.3f} | "
                f"{row['seconds']:.0f} s, {row['images_per_s']:.1f} img/s{' *' if improved else ''}",
                flush=True)
            torch.save({**state, "model": model.state_dict()}, last_path)
            _write_history(ckpt_dir / "metrics.csv", state["history"])
            assert writer is not None
            for key, value in row.items():
                if isinstance(value, float):
                    writer.add_scalar(key, value, epoch + 1)
            writer.flush()
        if state["bad_epochs"] >= recipe.patience:
            stopped_early = True
            log(f"early stop: validation loss has not improved for {recipe.patience} epochs")
            break
    if writer is not None:
        writer.close()
    best_stage = state["history"][state["best_epoch"] - 1]["stage"] if state["best_epoch"] > 0 else None
    if recipe.regime == "finetune" and best_stage == "head" and run.main:
        log(f"warning: no fine-tuning epoch beat epoch {state['best_epoch']} (head only) on "
            "validation loss, so the exported model is that head on the unchanged ImageNet "
            "backbone; raise --patience or revisit the fine-tuning recipe")

    # Best epoch -> fp16 -> calibration on val -> test metrics -> registry.
    if state["best_model"] is not None:
        model.load_state_dict(state["best_model"])
    round_to_half(model)
    evaluated_on = "test" if len(split.test) else "val (the test split is empty)"
    served, scores = served_scores(served_view_logits, dataset.labels, split.val,
                                   split.test if len(split.test) else split.val, dataset.classes,
                                   crops_allowed=not args.no_test_time_crops,
                                   flips=trained_flips(recipe.as_dict()))
    calibration = scores["calibration"]
    temperature, cut = served["temperature"], served["decision_threshold"]
    if "note" in calibration:
        log(f"calibration: {calibration['note']}")
    history = state["history"]
    full_rows = [r for r in history if r["stage"] == "full"] or history
    if run.main:
        metrics = {**scores, "evaluated_on": evaluated_on, "parameters": parameter_count(model),
                   "training": {"epochs_run": len(history), "best_epoch": state["best_epoch"],
                                "best_stage": best_stage,
                                "stopped_early": stopped_early,
                                "epoch_seconds": float(np.mean([r["seconds"] for r in full_rows])),
                                "images_per_s": float(np.mean([r["images_per_s"] for r in full_rows])),
                                "history": history}}
        card = export_model(
            model.cpu(), out, modality=args.modality, arch=recipe.arch, classes=dataset.classes,
            input_size=size, mean=mean, std=std, preprocessing=recipe.preprocessing,
            data=_data_record(args, dataset, masks),
            split=split.record,
            recipe={**recipe.as_dict(), "regime": recipe.regime, "pretrained": pretrained,
                    "seed": args.seed, "world_size": run.world, "device": str(run.device),
                    "amp": args.amp, "channels_last": args.channels_last,
                    "torch": torch.__version__, "command": state["command"],
                    "resumed_with": state["resumed"]},
            metrics=metrics, default=args.default, code_version=state["code_version"],
            kind="router" if args.router else "diagnosis", task=task, **served)
        if args.default:
            _make_sole_default(out, args.modality, card.task)
        card = fit_trust(out, images, dataset.labels, split)
        measured = card.trust["test"]
        log(f"trust: out-of-distribution threshold {card.trust['ood']['threshold']:.3f}, "
            f"uncertain above entropy {card.trust['uncertainty']['entropy_threshold']:.3f}; "
            f"on {evaluated_on}: {measured['uncertain_fraction']:.1%} uncertain (accuracy "
            f"{measured['accuracy_uncertain']} vs {measured['accuracy_certain']} certain), "
            f"{measured['ood_flagged_fraction']:.1%} flagged out of distribution")
        if args.external:
            card = record_external(out, args.external)
            log(f"external ({' '.join(map(str, args.external))}): accuracy "
                f"{card.metrics['external']['accuracy']:.4f}, n={card.metrics['external']['n']}")
        log(f"saved {out} ({card.name}): {evaluated_on} accuracy {scores['accuracy']:.4f}, "
            f"macro F1 {scores['macro_f1']:.4f}, ECE {scores['ece']:.4f}, T {temperature:.3f}"
            f", crops {served['test_time_crops']}, flips {served['test_time_flips']}"
            + (f", threshold {cut:.3f}" if cut is not None else "") + " "
            f"(val ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f})")
    run.close()
    return 0
