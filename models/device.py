"""Device auto-selection: CUDA, then Apple MPS, then CPU; ``MEDXAI_DEVICE`` overrides."""

from __future__ import annotations

import os

import torch

__all__ = ["select_device"]


def select_device(preferred: str | None = None) -> torch.device:
    """``preferred`` (or ``$MEDXAI_DEVICE``) if given, else the fastest device present."""
    choice = preferred or os.environ.get("MEDXAI_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
