"""Classification metrics of the studies, built on scikit-learn.

Per class (one-vs-rest from the confusion matrix): precision = PPV, recall = sensitivity,
specificity, NPV, F1, AUC-ROC. Overall: accuracy, balanced accuracy, macro / weighted F1,
G-mean = geometric mean of the per-class recalls (imbalanced-learn's multi-class definition; for
two classes sqrt(sensitivity * specificity)), IBA = mean over classes of
``(1 + alpha * (sens_c - spec_c)) * sens_c * spec_c`` (index of balanced accuracy, Garcia et
al. 2009, alpha = 0.1, squared G-mean of each one-vs-rest problem), macro one-vs-rest AUC-ROC,
and ECE (expected calibration error, equal-width confidence bins).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from models.predict import decide

__all__ = ["classification_report", "expected_calibration_error", "gmean", "iba", "one_vs_rest",
           "reliability_bins", "roc_points"]


def one_vs_rest(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class TP, FP, FN, TN from a confusion matrix (rows true, columns predicted)."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def gmean(cm: np.ndarray) -> float:
    """Geometric mean of the per-class recalls (sensitivities)."""
    counts = one_vs_rest(cm)
    recall = _ratio(counts["tp"], counts["tp"] + counts["fn"])
    return float(np.prod(recall) ** (1 / len(recall)))


def iba(cm: np.ndarray, alpha: float = 0.1) -> float:
    """Index of balanced accuracy: mean over classes of ``(1 + alpha*(sens-spec)) * sens*spec``."""
    counts = one_vs_rest(cm)
    sens = _ratio(counts["tp"], counts["tp"] + counts["fn"])
    spec = _ratio(counts["tn"], counts["tn"] + counts["fp"])
    return float(np.mean((1 + alpha * (sens - spec)) * sens * spec))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Equal-width confidence bins that hold predictions: centre, mean confidence, accuracy, count."""
    probs = np.asarray(probs, dtype=float)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    filled = [b for b in range(bins) if (which == b).any()]
    return {"centre": [(b + 0.5) / bins for b in filled],
            "confidence": [float(confidence[which == b].mean()) for b in filled],
            "accuracy": [float(correct[which == b].mean()) for b in filled],
            "count": [int((which == b).sum()) for b in filled]}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of ``|accuracy - confidence| * share``."""
    table = reliability_bins(probs, labels, bins)
    total = sum(table["count"])
    return float(sum(abs(a - c) * n / total for a, c, n in
                     zip(table["accuracy"], table["confidence"], table["count"], strict=True)))


def roc_points(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str]
               ) -> dict[str, dict[str, list[float]]]:
    """One-vs-rest ROC curve (false and true positive rates) of each class with both outcomes."""
    labels = np.asarray(labels)
    curves = {}
    for c, name in enumerate(classes):
        if (labels == c).any() and not (labels == c).all():
            fpr, tpr, _ = roc_curve(labels == c, np.asarray(probs)[:, c])
            curves[name] = {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
    return curves


def _auc(labels: np.ndarray, probs: np.ndarray, c: int) -> float | None:
    positive = labels == c
    if positive.all() or not positive.any():
        return None  # undefined without both positives and negatives
    return float(roc_auc_score(positive, probs[:, c]))


def classification_report(labels: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                          *, bins: int = 15, threshold: float | None = None) -> dict[str, Any]:
    """All metrics for true ``labels`` and class probabilities ``probs`` ``(N, C)``, the classes
    decided by :func:`models.predict.decide` (``threshold``: a two-class model's fitted cut).

    AUCs of classes absent from ``labels`` are ``None``; ``auc_macro`` averages the others.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    index = list(range(len(classes)))
    predicted = decide(probs, threshold)
    cm = confusion_matrix(labels, predicted, labels=index)
    counts = one_vs_rest(cm)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=index, zero_division=0)
    specificity = _ratio(counts["tn"], counts["tn"] + counts["fp"])
    npv = _ratio(counts["tn"], counts["tn"] + counts["fn"])
    aucs = [_auc(labels, probs, c) for c in index]
    defined = [a for a in aucs if a is not None]
    per_class = {
        name: {"precision": float(precision[c]), "ppv": float(precision[c]),
               "recall": float(recall[c]), "sensitivity": float(recall[c]),
               "specificity": float(specificity[c]), "npv": float(npv[c]), "f1": float(f1[c]),
               "auc": aucs[c], "support": int(support[c])}
        for c, name in enumerate(classes)
    }
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=index, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, predicted, labels=index, average="weighted",
                                      zero_division=0)),
        "gmean": gmean(cm),
        "iba": iba(cm),
        "auc_macro": float(np.mean(defined)) if defined else None,
        "ece": expected_calibration_error(probs, labels, bins),
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "roc": roc_points(labels, probs, classes),
        "reliability": reliability_bins(probs, labels, bins),
    }

