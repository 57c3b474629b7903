"""What the benchmarks share: the machine description, writing / printing the results, and the
options and model selection of the per-model benchmarks."""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import torch

from imaging import MODALITIES
from models.card import ModelCard
from models.registry import find_card, registry_status

__all__ = ["environment", "measure_each", "parse_model_bench", "store_in_card", "write_results"]


def environment() -> dict[str, object]:
    """Torch version, intra-op threads and CPU, for the results JSON."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}


def write_results(summary: dict[str, object], out: Path, table: str, print_json: bool) -> None:
    """Write ``summary`` as JSON to ``out``, print the table, the path and (if asked) the JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(table)
    print(f"written: {out}")
    if print_json:
        print(json.dumps(summary, indent=2))


def _model_arguments(parser: argparse.ArgumentParser, results: Path, stores: str | None) -> None:
    """The options of a benchmark over the shipped models: modalities, registry, threads, batch
    size, output JSON and printing it; with ``stores``, ``--write-cards`` to store each model's
    report as ``metrics[stores]`` of its card (:func:`store_in_card`)."""
    parser.add_argument("--modalities", default=",".join(MODALITIES),
                        help=f"comma-separated subset of {','.join(MODALITIES)}")
    parser.add_argument("--weights-dir", type=Path, help="registry (default: weights/)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=results)
    parser.add_argument("--json", action="store_true")
    if stores:
        parser.add_argument("--write-cards", action="store_true",
                            help=f'store the report in each card as metrics["{stores}"]')


def _default_models(parser: argparse.ArgumentParser, args: argparse.Namespace
                    ) -> tuple[list[str], list[tuple[str, str, ModelCard]], dict[str, str]]:
    """The chosen modalities (unknown ones are a usage error), the default model of each of their
    tasks as ``(modality, task, card)``, and the tasks without a usable model, with the reason.
    Sets torch's threads to ``--threads``."""
    chosen = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(MODALITIES))
    if unknown:
        parser.error(f"unknown modalities {unknown}; choose from {', '.join(MODALITIES)}")
    torch.set_num_threads(args.threads)
    models, skipped = [], {}
    for (modality, task), card in registry_status(args.weights_dir, by_task=True).items():
        if modality not in chosen:
            continue
        if isinstance(card, ModelCard):
            models.append((modality, task, card))
        else:
            skipped[task] = card.reason
    return chosen, models, skipped



def parse_model_bench(argv: list[str] | None, doc: str, results: Path, *,
                      stores: str | None = None,
                      extra: Callable[[argparse.ArgumentParser], None] | None = None
                      ) -> tuple[argparse.Namespace, list[str], list[tuple[str, str, ModelCard]],
                                 dict[str, str]]:
    """Parse the options of a benchmark over the shipped models (its description: the first line
    of ``doc``; :func:`_model_arguments`, then ``extra(parser)``) and choose its models:
    ``(args, chosen modalities, models, skipped)`` as :func:`_default_models` gives them."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    _model_arguments(parser, results, stores)
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    return (args, *_default_models(parser, args))

def store_in_card(modality: str, card: ModelCard, key: str, value: object, root: Path | None) -> str:
    """Store ``value`` as ``metrics[key]`` of the registry's card of ``card``'s task (weights
    untouched), unless that card changed (retrained) while the benchmark ran; says which."""
    folder, current = find_card(modality, root, card.task)
    if (current.sha256, current.split.get("test_sha256")) != (card.sha256,
                                                               card.split.get("test_sha256")):
        return f"not written: {folder.name} changed while measuring (retrained?)"
    replace(current, metrics={**current.metrics, key: value}).write(folder)
    return f"written to {folder.name}/card.json"


Result = TypeVar("Result")


def measure_each(models: list[tuple[str, str, ModelCard]], root: Path | None,
                 skipped: dict[str, str], measure: Callable[[Path, ModelCard], Result]
                 ) -> list[tuple[str, str, ModelCard, Result]]:
    """``measure(folder, card)`` of each model (its folder in the registry ``root``) as
    ``(modality, task, card, result)``; a model whose files or data fail (``OSError``,
    ``ValueError``, ``KeyError``) is added to ``skipped`` with the reason instead."""
    results = []
    for modality, task, card in models:
        try:
            folder, _ = find_card(modality, root, task)
            results.append((modality, task, card, measure(folder, card)))
        except (OSError, ValueError, KeyError) as exc:
            skipped[task] = f"{card.name}: {exc}"
    return results
