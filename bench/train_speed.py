"""Training throughput: the real training step vs a bare forward+backward+step loop.

Both run in the same process on the same batches (same indices, same model and optimiser
settings). The training step is :func:`training.loop.train_epoch` with the recipe's tensor
augmentation and normalisation; the bare loop gets the batches already augmented, normalised and
on the device, so ``ratio = training images/s / bare images/s`` is the data-pipeline overhead
(target >= 0.9). Also measured: the feature regime, i.e. the one-off backbone pass that fills
the feature cache and one head epoch on the cache, against one fine-tuning epoch (estimated from
the measured step rate).

    python bench/train_speed.py [--data ../shared/data/brain-tumor-mri] [--arch ...] [--size 224]

Without ``--data`` (or when it is missing) random uint8 images are used. Prints a table and
writes ``bench/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.zoo import build_model, get_arch  # noqa: E402
from training.augment import Augment  # noqa: E402
from training.data import decode_images, list_files  # noqa: E402
from training.loop import train_epoch  # noqa: E402
from training.recipes import get_recipe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "train_speed.json"


def _images(data: Path | None, count: int, preprocessing: str, size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    if data is not None and data.exists():
        dataset = list_files(data)
        pick = np.random.default_rng(0).permutation(len(dataset.files))[:count]
        images = decode_images([dataset.paths[i] for i in pick], preprocessing, size)
        return images, torch.from_numpy(dataset.labels[pick]), str(data)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 4, (count,), generator=generator), "random uint8 images"


def _time(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="class folders (default: random images)")
    parser.add_argument("--recipe", default="brain-mri-2024")
    parser.add_argument("--arch", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per loop")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    recipe = get_recipe(args.recipe)
    spec = get_arch(args.arch)
    count = args.batch * args.steps
    images, labels, source = _images(args.data, count, recipe.preprocessing, args.size)
    classes = int(labels.max()) + 1
    model = build_model(args.arch, max(classes, 2), dropout=recipe.dropout)
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    loss_fn = nn.CrossEntropyLoss()
    augment = Augment(recipe, spec.mean, spec.std)
    indices = list(range(count))
    batches = [(augment(images[i:i + args.batch]).contiguous(memory_format=torch.channels_last),
                labels[i:i + args.batch]) for i in range(0, count, args.batch)]

    def bare() -> None:
        model.train()
        for x, y in batches:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def step() -> None:
        train_epoch(model, images, labels, indices, augment, optimizer, loss_fn, args.batch,
                    device=torch.device("cpu"), channels_last=True,
                    amp=lambda: torch.autocast("cpu", enabled=False), show=False)

    train_epoch(model, images, labels, indices[:args.batch], augment, optimizer, loss_fn,
                args.batch, device=torch.device("cpu"), channels_last=True,
                amp=lambda: torch.autocast("cpu", enabled=False), show=False)  # warm-up
    bare_s, step_s = [], []
    for _ in range(args.rounds):  # interleaved so that background load hits both alike
        bare_s.append(_time(bare))
        step_s.append(_time(step))
    bare_ips, step_ips = count / min(bare_s), count / min(step_s)
    augment_s = _time(lambda: [augment(images[i:i + args.batch]) for i in range(0, count, args.batch)])

    head = model.get_submodule(spec.head or "fc")
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, a: captured.append(a[0].flatten(1)))
    model.eval()
    with torch.no_grad():
        cache_s = _time(lambda: [model(b[0]) for b in batches])
    hook.remove()
    features = torch.cat(captured)
    head_optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    head_epoch_s = _time(lambda: train_epoch(
        head, features, labels, indices, nn.Identity(), head_optimizer, loss_fn, args.batch,
        device=torch.device("cpu"), channels_last=False,
        amp=lambda: torch.autocast("cpu", enabled=False), show=False))

    result = {
        "arch": args.arch, "size": args.size, "batch": args.batch, "images": count,
        "recipe": args.recipe, "data": source, "threads": args.threads, "rounds": args.rounds,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "bare_images_per_s": bare_ips, "train_step_images_per_s": step_ips,
        "ratio": step_ips / bare_ips, "target_ratio": 0.9,
        "augment_seconds_per_image": augment_s / count,
        "feature_cache_images_per_s": count / cache_s,
        "feature_head_epoch_s_per_1000_images": head_epoch_s / count * 1000,
        "finetune_epoch_s_per_1000_images": 1000 / step_ips,
    }
    rows = [("bare forward+backward+step", f"{bare_ips:8.1f} img/s"),
            ("training step (augment + normalise + step)", f"{step_ips:8.1f} img/s"),
            ("ratio (target >= 0.90)", f"{result['ratio']:8.3f}"),
            ("augmentation alone", f"{augment_s / count * 1000:8.2f} ms/img"),
            ("feature cache fill (forward only)", f"{count / cache_s:8.1f} img/s"),
            ("feature regime: head epoch / 1000 images", f"{result['feature_head_epoch_s_per_1000_images']:8.3f} s"),
            ("finetune epoch / 1000 images", f"{result['finetune_epoch_s_per_1000_images']:8.1f} s")]
    print(f"{args.arch} @ {args.size}px, batch {args.batch}, {count} images ({source}), "
          f"{args.threads} threads")
    for name, value in rows:
        print(f"  {name:<44} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
