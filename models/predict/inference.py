"""Prediction: the model's view of an image, its test-time views and calibrated class
probabilities, with the trust signals of :mod:`models.trust`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch

from imaging import preprocess
from models.registry import LoadedModel
from models.trust import capture_features, inference_views, uncertainty_of

__all__ = [
    "Prediction",
    "DEFAULT_ENTROPY_THRESHOLD",
    "decide",
    "decision_logits",
    "feature_layer",
    "model_view",
    "predict",
    "predict_batch",
    "probabilities",
    "to_input",
    "view_logits",
    "view_to_input",
]


ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)

# Normalised entropy above which a model without a fitted threshold calls itself uncertain.
DEFAULT_ENTROPY_THRESHOLD = 0.5


@dataclass(frozen=True)
class Prediction:
    """The top class, its calibrated probability, all class probabilities, the latency, and the
    trust signals of :mod:`models.trust`: ``in_distribution`` and ``ood_score`` (``None`` when
    the model has no guard), ``uncertain``, ``uncertainty`` (normalised entropy) and
    ``tta_agreement`` (share of test-time views with the same label)."""

    label: str
    index: int
    confidence: float
    probabilities: dict[str, float]
    latency_ms: float
    in_distribution: bool | None = None
    ood_score: float | None = None
    uncertain: bool = False
    uncertainty: float = 0.0
    tta_agreement: float = 1.0

    @property
    def warnings(self) -> list[str]:
        """Sentences a clinician must read before the label; empty when nothing is off."""
        found = []
        if self.in_distribution is False:
            found.append("This image is unlike the images the model was trained on "
                         f"(distance {self.ood_score:.2f} above its threshold): the label is not "
                         "reliable.")
        if self.uncertain:
            found.append(f"The model is uncertain (normalised entropy {self.uncertainty:.2f}, "
                         f"{self.tta_agreement:.0%} of slightly altered views agree): the label "
                         "is not reliable.")
        return found


def model_view(loaded: LoadedModel, rgb: np.ndarray) -> np.ndarray:
    """The image exactly as the model sees it (card preprocessing at the card's input size)."""
    return preprocess(rgb, loaded.card.preprocessing, loaded.card.input_size)


def to_input(loaded: LoadedModel, rgb: np.ndarray) -> torch.Tensor:
    """``(1, 3, S, S)`` float tensor on the model's device, normalised as the card says."""
    return view_to_input(loaded, model_view(loaded, rgb))


def view_to_input(loaded: LoadedModel, view: np.ndarray) -> torch.Tensor:
    """The model input from an already preprocessed view (see :func:`model_view`)."""
    x = torch.from_numpy(np.ascontiguousarray(view)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(loaded.card.mean).view(3, 1, 1)
    std = torch.tensor(loaded.card.std).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0).to(loaded.device)


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Class probabilities from logits ``(N, C)``: softmax of ``logits / T``.

    A single-logit (binary) head gives ``[1 - sigmoid(z / T), sigmoid(z / T)]``.
    """
    scaled = logits.float() / temperature
    if scaled.shape[1] == 1:
        positive = torch.sigmoid(scaled)
        return torch.cat([1 - positive, positive], dim=1)
    return torch.softmax(scaled, dim=1)


def decide(probs: ArrayT, threshold: float | None = None) -> ArrayT:
    """Predicted class of each row of ``probs`` ``(N, C)`` (torch or numpy): the largest
    probability, or for two classes with a fitted ``threshold`` the second class when its
    probability reaches the threshold (see :attr:`models.card.ModelCard.decision_threshold`)."""
    if threshold is None or probs.shape[1] != 2:
        return probs.argmax(1)
    positive = probs[:, 1] >= threshold
    return positive.long() if isinstance(positive, torch.Tensor) else positive.astype(np.int64)


def feature_layer(loaded: LoadedModel) -> str:
    """The module whose input is the penultimate feature vector (the classifier head)."""
    return loaded.arch.head or "fc"


def predict(loaded: LoadedModel, rgb: np.ndarray, *, views: bool = True,
            view: np.ndarray | None = None) -> Prediction:
    """Run the model on one RGB image and (``views``) its test-time views in one batch
    (preprocessing included in the latency); trust signals from the same pass. ``view``: the
    image already preprocessed (:func:`model_view`), so as not to preprocess it again."""
    start = time.perf_counter()
    result = predict_batch(loaded, [model_view(loaded, rgb) if view is None else view],
                           views=views)[0]
    return replace(result, latency_ms=(time.perf_counter() - start) * 1000)


def view_logits(model: torch.nn.Module, x: torch.Tensor, crops: Sequence[float] = (),
                flips: Sequence[str] = (), *, altered: bool = False) -> torch.Tensor:
    """Logits ``(N, V, C)`` of the :func:`models.trust.inference_views` of normalised inputs
    ``x``, in one forward pass: per image, itself, its centre ``crops``, its ``flips`` and
    (``altered``) the views that probe the label."""
    rows = inference_views(x, crops, flips, altered=altered)
    logits = model(rows.contiguous(memory_format=torch.channels_last)).float()
    return logits.view(len(x), len(rows) // len(x), logits.shape[-1])


def decision_logits(views: torch.Tensor, extra: int) -> torch.Tensor:
    """``(N, V, C)`` logits of :func:`view_logits` -> the same with row 0 replaced by the
    decision: the mean logit of the image and the ``extra`` decision views after it, its crops
    and flips (test-time augmentation, chosen per model on validation:
    :func:`training.calibrate.choose_views`; see :attr:`ModelCard.decision_views`)."""
    return torch.cat([views[:, :1 + extra].mean(1, keepdim=True), views[:, 1:]], dim=1)


def predict_batch(loaded: LoadedModel, model_views: Sequence[np.ndarray], *, views: bool = True,
                  pass_rows: int | None = None) -> list[Prediction]:
    """:func:`predict` for many images already in the model's view (see :func:`model_view`).

    Each image's decision crops and flips (the card's ``test_time_crops`` and
    ``test_time_flips``) and test-time views
    (``views``) run in the same forward pass as the image. With ``pass_rows``, every forward
    pass holds the same number of images, as many as fit in ``pass_rows`` input rows (at least
    one image with its views), the last pass padded with zeros. An image's result then does not
    depend on which images share its batch: CPU kernels round differently for different batch
    sizes, and a sharded or resumed run must give the bits of an uninterrupted one.
    ``latency_ms`` is the batch's time divided by its size.
    """
    if not model_views:
        return []
    start = time.perf_counter()
    card = loaded.card
    x = torch.cat([view_to_input(loaded, view) for view in model_views])
    per_image = len(inference_views(x[:1], card.test_time_crops, card.test_time_flips,
                                    altered=views))
    step = max(1, pass_rows // per_image) if pass_rows else len(x)
    logits, scores = [], []
    with torch.inference_mode(), capture_features(loaded.model, feature_layer(loaded)) as captured:
        for i in range(0, len(x), step):
            part = x[i:i + step]
            padded = torch.cat([part, part.new_zeros((step - len(part), *part.shape[1:]))])
            logits.append(view_logits(loaded.model, padded, card.test_time_crops,
                                      card.test_time_flips, altered=views)[:len(part)].cpu())
            features = captured.pop()[::per_image][:len(part)].cpu()  # each image, not its views
            if loaded.guard is not None:
                scores.append(loaded.guard.score(features))
    decided = decision_logits(torch.cat(logits), card.decision_views)
    probs = probabilities(decided.flatten(0, 1), card.temperature).view(decided.shape[:2] + (-1,))
    threshold = card.trust.get("uncertainty", {}).get("entropy_threshold",
                                                      DEFAULT_ENTROPY_THRESHOLD)
    distances = torch.cat(scores) if scores else None
    latency_ms = (time.perf_counter() - start) * 1000 / len(model_views)
    results = []
    for i, view_probs in enumerate(probs):
        labels = decide(view_probs, card.decision_threshold)
        index = int(labels[0])
        doubt = uncertainty_of(view_probs, threshold, labels)
        ood_score = in_distribution = None
        if loaded.guard is not None and distances is not None:
            ood_score = float(distances[i])
            in_distribution = ood_score <= loaded.guard.threshold_for(index)
        results.append(Prediction(
            card.classes[index], index, float(view_probs[0, index]),
            {c: float(p) for c, p in zip(card.classes, view_probs[0], strict=True)}, latency_ms,
            in_distribution, ood_score, doubt.uncertain, doubt.entropy, doubt.agreement))
    return results
