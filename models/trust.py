"""Trust signals beside the softmax: is the image like the training data, and is the model sure?

- **Out-of-distribution guard** (:class:`FeatureGuard`): deep k-nearest-neighbour distance
  (Sun et al., "Out-of-distribution detection with deep nearest neighbors", ICML 2022) of the
  image's penultimate features (the classifier's input, L2-normalised) to a stored sample of
  training features. An image whose distance exceeds the threshold fitted on validation data
  (the 97th percentile of in-distribution validation distances, per predicted class where
  validation has enough images of it) is flagged.
- **Uncertainty** (:func:`uncertainty_of`): normalised predictive entropy of the calibrated
  probabilities (0: one class certain, 1: uniform) plus disagreement of the label under a few
  mild test-time views (centre crop, brighter, darker). "Uncertain" when the entropy is above
  the threshold fitted on validation data or any view changes the label.

The statistics are stored beside the weights (``trust.safetensors``, sha256 in the card) and
refitted by the export step of every training run (:mod:`training.trust`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.card import FLIPS

__all__ = [
    "ALTERED_CROP",
    "TRUST_FILE",
    "FeatureGuard",
    "Uncertainty",
    "capture_features",
    "centre_crop",
    "flipped",
    "normalised_entropy",
    "reference_sample",
    "inference_views",
    "uncertainty_of",
]

TRUST_FILE = "trust.safetensors"


class FeatureGuard:
    """k-NN distance of L2-normalised features to a reference set, and its thresholds.

    One threshold for every image, or one per predicted class where validation had enough
    images of that class: classes differ in how tightly their features cluster (capsule frames
    are far more varied than chest X-rays), so a single threshold flags the in-distribution
    images of a varied class far more often than those of a uniform one.
    """

    def __init__(self, reference: torch.Tensor, k: int, threshold: float = math.inf,
                 class_thresholds: Sequence[float] | None = None) -> None:
        if reference.ndim != 2 or len(reference) < k or k < 1:
            raise ValueError("the reference needs shape (N, D) with N >= k >= 1")
        self.reference = F.normalize(reference.float(), dim=1)
        self.k = k
        self.threshold = threshold
        self.class_thresholds = tuple(class_thresholds) if class_thresholds is not None else None

    @classmethod
    def fit(cls, train: torch.Tensor, val: torch.Tensor, *, val_classes: torch.Tensor | None = None,
            num_classes: int = 0, min_per_class: int = 30, k: int = 5, max_reference: int = 1024,
            quantile: float = 0.95, seed: int = 0) -> FeatureGuard:
        """Keep up to ``max_reference`` training features (seeded sample); threshold = the
        ``quantile`` of the validation images' scores. With ``val_classes`` (each validation
        image's predicted class, of ``num_classes``), a class with at least ``min_per_class``
        validation images gets the ``quantile`` of its own scores, the others the global one."""
        train = train[reference_sample(len(train), max_reference, seed)]
        guard = cls(train, min(k, len(train)))
        scores = guard.score(val)
        guard.threshold = float(torch.quantile(scores, quantile))
        if val_classes is not None:
            members = [scores[val_classes == c] for c in range(num_classes)]
            guard.class_thresholds = tuple(
                float(torch.quantile(m, quantile)) if len(m) >= min_per_class else guard.threshold
                for m in members)
        return guard

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Distance of each feature row to its k-th nearest reference row (higher: stranger)."""
        similarity = F.normalize(features.float(), dim=1) @ self.reference.T
        kth = similarity.topk(self.k, dim=1).values[:, -1]
        return (2 - 2 * kth).clamp_min(0).sqrt()

    def threshold_for(self, predicted: int) -> float:
        """The threshold an image predicted as class ``predicted`` is held to."""
        return self.threshold if self.class_thresholds is None else self.class_thresholds[predicted]

    def in_distribution(self, features: torch.Tensor, predicted: torch.Tensor | None = None
                        ) -> torch.Tensor:
        """True where the score is within the threshold (of each row's ``predicted`` class,
        where the guard has per-class thresholds)."""
        scores = self.score(features)
        if self.class_thresholds is None:
            return scores <= self.threshold
        if predicted is None:
            raise ValueError("this guard has one threshold per class: pass the predicted classes")
        return scores <= torch.tensor(self.class_thresholds)[predicted]


def reference_sample(n: int, size: int = 1024, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a seeded sample of ``size`` of ``n`` items (all when ``n <= size``)."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


@contextmanager
def capture_features(model: nn.Module, head: str) -> Iterator[list[torch.Tensor]]:
    """Collect the flattened input of module ``head`` on every forward the calling thread runs
    (a model is shared by sessions: another thread's forward is not this image's); the hook is
    always removed."""
    captured: list[torch.Tensor] = []
    caller = threading.get_ident()

    def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if threading.get_ident() == caller:
            captured.append(args[0].flatten(1))

    hook = model.get_submodule(head).register_forward_pre_hook(record)
    try:
        yield captured
    finally:
        hook.remove()


def centre_crop(x: torch.Tensor, keep: float) -> torch.Tensor:
    """The central ``keep`` share of each side of ``(N, 3, S, S)`` inputs, resized back to S."""
    size = x.shape[-1]
    margin = round(size * (1 - keep) / 2)
    return F.interpolate(x[..., margin:size - margin, margin:size - margin], size=(size, size),
                         mode="bilinear", align_corners=False)


def flipped(x: torch.Tensor, flip: str) -> torch.Tensor:
    """``(N, 3, S, S)`` inputs mirrored by the named flip of :data:`models.card.FLIPS`."""
    return x.flip(FLIPS[flip])


ALTERED_CROP = 0.9  # the centre crop among the views that probe the label


def inference_views(x: torch.Tensor, crops: Sequence[float] = (), flips: Sequence[str] = (), *,
                    altered: bool = True) -> torch.Tensor:
    """``(N, 3, S, S)`` normalised inputs -> ``(N * V, 3, S, S)``, each image's V views together:
    the image, its centre ``crops`` and ``flips`` (a model's decision views, see
    :func:`models.predict.decision_logits`) and, with ``altered``, the views that probe the
    label: a 90 % centre crop (unless among ``crops``) and the image shifted by +-0.1 of its
    range (brighter, darker)."""
    extra = (ALTERED_CROP,) if altered and ALTERED_CROP not in crops else ()
    views = [x, *(centre_crop(x, keep) for keep in crops), *(flipped(x, f) for f in flips),
             *(centre_crop(x, keep) for keep in extra)]
    if altered:
        step = 0.1 * (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True))
        views += [x + step, x - step]
    return torch.stack(views, dim=1).flatten(0, 1)


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of each probability row divided by log(C): 0 certain, 1 uniform."""
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    return entropy / math.log(probs.shape[1])


@dataclass(frozen=True)
class Uncertainty:
    """Normalised entropy of the calibrated probabilities, label agreement of the test-time
    views (share of views with the original's label) and the verdict."""

    entropy: float
    agreement: float
    uncertain: bool


def uncertainty_of(view_probs: torch.Tensor, entropy_threshold: float,
                   labels: torch.Tensor | None = None) -> Uncertainty:
    """Uncertainty from the calibrated probabilities of the views (row 0: the image itself) and
    their predicted ``labels`` (default: the largest probability of each view)."""
    entropy = float(normalised_entropy(view_probs[:1])[0])
    labels = view_probs.argmax(1) if labels is None else labels
    agreement = float((labels == labels[0]).float().mean())
    return Uncertainty(entropy, agreement, entropy > entropy_threshold or agreement < 1.0)
