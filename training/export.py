"""Writing a trained model into the weight registry (``weights/<name>/``) with its full card.

The card's name is the folder name; the weights are stored in fp16 (the model passed in should
already be rounded with :func:`round_to_half` so that the card's metrics are those of the shipped
weights). After writing, the entry is loaded back through :func:`models.registry.load_model`, so
a model that the app could not load is never left behind silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.card import ModelCard
from models.registry import load_model, save_model

__all__ = ["MAX_WEIGHTS_BYTES", "export_model", "round_to_half"]

MAX_WEIGHTS_BYTES = 25 * 2**20  # a shipped weights file must stay small enough to commit


@torch.no_grad()
def round_to_half(model: nn.Module) -> nn.Module:
    """Round every floating parameter and buffer through fp16 in place (what the registry keeps)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())
    return model


def export_model(model: nn.Module, folder: Path, *, modality: str, arch: str, classes: list[str],
                 input_size: int, mean: list[float], std: list[float], preprocessing: str,
                 temperature: float, data: dict[str, Any], split: dict[str, Any],
                 recipe: dict[str, Any], metrics: dict[str, Any], default: bool,
                 code_version: str, kind: str = "diagnosis",
                 decision_threshold: float | None = None, task: str = "",
                 test_time_crops: list[float] | None = None,
                 test_time_flips: list[str] | None = None) -> ModelCard:
    """Save weights + card into ``folder`` and check that the registry loads them back.

    ``code_version`` is the commit the training ran on (taken when it started, so that edits
    made while a long run trains do not mark its card dirty).
    """
    folder = Path(folder)
    card = save_model(model, folder, half=True, name=folder.name, modality=modality, arch=arch,
                      classes=classes, input_size=input_size, mean=mean, std=std,
                      preprocessing=preprocessing, temperature=temperature, data=data,
                      split=split, recipe=recipe, metrics=metrics, default=default,
                      code_version=code_version, kind=kind,
                      decision_threshold=decision_threshold, task=task,
                      test_time_crops=list(test_time_crops or []),
                      test_time_flips=list(test_time_flips or []))
    size = (folder / card.weights_file).stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        print(f"warning: {folder / card.weights_file} is {size / 2**20:.1f} MiB, above the "
              f"{MAX_WEIGHTS_BYTES / 2**20:.0f} MiB limit for committed weights")
    load_model(folder, device="cpu")
    return card
