"""The honest floor: a linear probe on frozen ImageNet EfficientNet-Lite0 features.

Features are the 1280-d pooled activations that feed Lite0's ``classifier`` (ImageNet weights,
symmetric normalisation as the architecture spec says), computed once per image in batches. A
scikit-learn logistic regression on standardised features is fitted on the training images,
its inverse regularisation ``C`` chosen by seeded stratified K-fold cross-validation on those
training images only (log-loss, the proper scoring rule), then scored on the test images with
:func:`training.metrics.classification_report`, the report format of the model cards. A
fine-tuned model that does not clearly beat this probe has learnt little beyond ImageNet.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from models.zoo import build_model, get_arch
from training.metrics import classification_report

__all__ = ["C_GRID", "PROBE_ARCH", "feature_extractor", "fit_probe", "linear_probe", "probe_features"]

PROBE_ARCH = "tf_efficientnet_lite0"
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 13))  # 1e-4 ... 100, half-decade steps


@lru_cache(maxsize=1)
def feature_extractor() -> nn.Module:
    """ImageNet Lite0 in eval mode with its classifier replaced by the identity (1280-d out)."""
    model = build_model(PROBE_ARCH, None, pretrained="imagenet")
    model.classifier = nn.Identity()  # the classifier's input: pooled 1280-d features
    return model.eval().to(memory_format=torch.channels_last)


def probe_features(images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """``(N, 1280)`` float32 features of uint8 ``(N, 3, S, S)`` images, normalised as the arch says."""
    spec = get_arch(PROBE_ARCH)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    model = feature_extractor()
    with torch.inference_mode():
        chunks = [model(((batch.float() / 255 - mean) / std).contiguous(
            memory_format=torch.channels_last)) for batch in images.split(batch_size)]
    return torch.cat(chunks).numpy()


def fit_probe(train_images: torch.Tensor, train_labels: Sequence[int], num_classes: int, *,
              folds: int = 5, seed: int = 0, cs: Sequence[float] = C_GRID,
              batch_size: int = 64) -> GridSearchCV:
    """The fitted probe: standardised features, balanced logistic regression, ``C`` chosen by
    stratified K-fold cross-validation (log-loss) on these training images only; folds are
    capped by the smallest class. Score new images with
    ``fitted.predict_proba(probe_features(images))``."""
    train_y = np.asarray(train_labels)
    folds = min(folds, int(np.bincount(train_y, minlength=num_classes).min()))
    if folds < 2:
        raise ValueError("every class needs at least two training images for cross-validation")
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=5000)),
        {"logisticregression__C": list(cs)}, scoring="neg_log_loss",
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed), n_jobs=1)
    return search.fit(probe_features(train_images, batch_size), train_y)


def linear_probe(train_images: torch.Tensor, train_labels: Sequence[int],
                 test_images: torch.Tensor, test_labels: Sequence[int], classes: Sequence[str],
                 *, folds: int = 5, seed: int = 0, cs: Sequence[float] = C_GRID,
                 batch_size: int = 64) -> dict[str, Any]:
    """Fit the probe on the training images (:func:`fit_probe`) and report it on the test images.

    Returns :func:`~training.metrics.classification_report` of the test images plus ``C``, the
    CV setting and score, the training size and the feature description.
    """
    search = fit_probe(train_images, train_labels, len(classes), folds=folds, seed=seed, cs=cs,
                       batch_size=batch_size)
    probs = search.predict_proba(probe_features(test_images, batch_size))
    report = classification_report(np.asarray(test_labels), probs, classes)
    best_c = float(search.best_params_["logisticregression__C"])
    return {**report, "C": best_c, "C_grid": [float(min(cs)), float(max(cs))],
            "cv": f"stratified {search.cv.n_splits}-fold, seed {seed}, log-loss",
            "cv_log_loss": float(-search.best_score_), "n_train": int(len(train_labels)),
            "features": f"{PROBE_ARCH} ImageNet, frozen, 1280-d pooled, standardised"}
