"""Which class a map explains, the score whose gradient is taken, and reported probabilities.

* Target: the predicted class by default; otherwise an index, or a class name looked up in
  ``class_names`` (case-insensitive), or one of those per sample.
* Score: the RAW LOGIT of the target class (pre-softmax), for every gradient method, DT Grad-CAM
  and Score-CAM alike. Binary single-logit models (output shape (B, 1)): class 1 scores ``+z``,
  class 0 scores ``-z``; the predicted class is 1 when ``z > 0``.
* Probabilities (reported, never differentiated): softmax of ``logits / T``; a single-logit
  model gives ``[1 - sigmoid(z / T), sigmoid(z / T)]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "Target",
    "num_classes",
    "predicted",
    "probabilities",
    "resolve_targets",
    "target_scores",
]

Target = int | str | None


def num_classes(logits: torch.Tensor) -> int:
    """Number of classes a (B, C) logit tensor stands for (2 for a single-logit head)."""
    return 2 if logits.shape[1] == 1 else int(logits.shape[1])


def _one(target: int | str, n: int, class_names: Sequence[str] | None) -> int:
    if isinstance(target, bool):
        raise ValueError(f"target must be a class index or name, not {target!r}")
    if isinstance(target, str):
        text = target.strip()
        if class_names is not None:
            lowered = [c.lower() for c in class_names]
            if text.lower() in lowered:
                return lowered.index(text.lower())
        if text.lstrip("-").isdigit():
            return _one(int(text), n, class_names)
        known = f"; classes: {', '.join(class_names)}" if class_names else ""
        raise ValueError(f"unknown target class {target!r}{known}")
    index = int(target)
    if not 0 <= index < n:
        raise ValueError(f"target index {index} is out of range for {n} classes")
    return index


def predicted(logits: torch.Tensor) -> torch.Tensor:
    """(B,) predicted class per sample."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def resolve_targets(
    logits: torch.Tensor,
    target: Target | Sequence[Target] = None,
    class_names: Sequence[str] | None = None,
    decided: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B,) long tensor of target classes for a batch of logits (B, C); ``target`` is one
    :data:`Target` for all, or one per sample (None: that sample's predicted class, taken from
    ``decided`` when given, e.g. a two-class decision threshold, else the largest logit)."""
    n = num_classes(logits)
    if class_names is not None and len(class_names) != n:
        raise ValueError(f"{len(class_names)} class names for a model with {n} classes")
    batch = logits.shape[0]
    best = predicted(logits.detach()) if decided is None else decided
    if target is None:
        return best
    if isinstance(target, (str, int)):
        return torch.full((batch,), _one(target, n, class_names), dtype=torch.long,
                          device=logits.device)
    items = list(target)
    if len(items) != batch:
        raise ValueError(f"{len(items)} targets for a batch of {batch}")
    best = best.tolist()
    return torch.tensor([best[i] if t is None else _one(t, n, class_names)
                         for i, t in enumerate(items)], dtype=torch.long, device=logits.device)


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) raw-logit score of each sample's target (``+-z`` for a single-logit head)."""
    if logits.shape[1] == 1:
        sign = targets.to(logits.dtype) * 2 - 1
        return logits[:, 0] * sign
    return logits.gather(1, targets.view(-1, 1))[:, 0]


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, C) probabilities: softmax(z / T), or [1 - s, s] with s = sigmoid(z / T) for one logit."""
    z = logits.detach().float() / temperature
    if z.shape[1] == 1:
        p = torch.sigmoid(z)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(z, dim=1)
