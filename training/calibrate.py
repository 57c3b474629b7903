"""Calibration on validation data: temperature scaling (Guo et al. 2017) and, for two-class
models, the decision threshold.

Probabilities at inference are ``softmax(logits / T)`` (:func:`models.predict.probabilities`);
T changes confidences, never the class. The threshold is the cut on the calibrated probability
of the second class that maximises balanced accuracy (Youden's J) on validation data, among cuts
from 0.1 to 0.9; of cuts that do equally well the one nearest 0.5, so a validation split with few
errors keeps 0.5.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from torch.nn import functional as F

from models.predict import probabilities
from training.metrics import expected_calibration_error

__all__ = ["SUSPICIOUS_TEMPERATURE", "MAX_THRESHOLD_DISTANCE", "calibration_record", "fit_temperature", "fit_threshold"]


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The T > 0 that minimises the negative log-likelihood of ``labels`` (LBFGS on log T)."""
    logits, labels = logits.detach().float(), labels.detach().long()
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def fit_threshold(probs: np.ndarray, labels: np.ndarray,
                  max_distance: float | None = None) -> float:
    """The cut on ``probs[:, 1]`` (two classes) with the best balanced accuracy on ``labels``;
    candidates are 0.5 and the midpoints between consecutive distinct probabilities within
    ``max_distance`` of 0.5 (default :data:`MAX_THRESHOLD_DISTANCE`; 0.5: any cut)."""
    positive, labels = np.asarray(probs, dtype=float)[:, 1], np.asarray(labels)
    distance = MAX_THRESHOLD_DISTANCE if max_distance is None else max_distance
    values = np.unique(positive)
    cuts = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2])
    cuts = cuts[np.abs(cuts - 0.5) <= distance]
    scores = np.array([balanced_accuracy_score(labels, positive >= cut) for cut in cuts])
    best = cuts[scores >= scores.max() - 1e-12]
    return float(best[np.argmin(np.abs(best - 0.5))])


# A fitted temperature below this sharpens an already confident model: a sign of a validation
# split too easy to calibrate on (near-duplicates of training images, or too few errors).
SUSPICIOUS_TEMPERATURE = 0.5
# A decision threshold further than this from 0.5 rests on the few validation images beyond it,
# and contradicts the calibrated probability it cuts: an X-ray run's cut at p(pneumonia) >= 0.057
# called 15 of 130 test normals pneumonia. Such cuts are not adopted.
MAX_THRESHOLD_DISTANCE = 0.4


def calibration_record(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | str]:
    """Fit T on these (validation) logits; ECE and NLL before and after, and a ``note`` when the
    fit is degenerate (no validation errors: T stays 1, since the NLL then falls without bound
    as T -> 0) or suspicious (T < 0.5, or a best validation cut below 0.1 or above 0.9, which is
    not adopted). Two classes: ``decision_threshold`` and the validation balanced accuracy at
    0.5 and at the threshold."""
    errors = int((logits.argmax(1) != labels).sum())
    temperature = fit_temperature(logits, labels) if errors else 1.0
    record: dict[str, float | str] = {"temperature": temperature, "validation_errors": errors}
    if not errors:
        record["note"] = "validation has no errors: temperature not fitted, kept at 1"
    elif temperature < SUSPICIOUS_TEMPERATURE:
        record["note"] = (f"warning: fitted temperature {temperature:.2f} < "
                          f"{SUSPICIOUS_TEMPERATURE}: the validation split may be too easy")
    for tag, t in (("before", 1.0), ("after", temperature)):
        probs = probabilities(logits, t)
        record[f"ece_{tag}"] = expected_calibration_error(probs.numpy(), labels.numpy())
        record[f"nll_{tag}"] = float(F.nll_loss(probs.clamp_min(1e-12).log(), labels))
    if probs.shape[1] == 2:
        cut = fit_threshold(probs.numpy(), labels.numpy())
        record["decision_threshold"] = cut
        for tag, value in (("half", 0.5), ("threshold", cut)):
            record[f"val_balanced_accuracy_{tag}"] = float(balanced_accuracy_score(
                labels.numpy(), probs[:, 1].numpy() >= value))
        unbounded = fit_threshold(probs.numpy(), labels.numpy(), max_distance=0.5)
        if abs(unbounded - 0.5) > MAX_THRESHOLD_DISTANCE:
            warning = (f"warning: the best validation cut {unbounded:.3f} lies beyond "
                       f"{0.5 - MAX_THRESHOLD_DISTANCE:g}-{0.5 + MAX_THRESHOLD_DISTANCE:g} and was "
                       f"not adopted (it fits a few borderline validation images); cut {cut:.3f}")
            record["note"] = f"{record['note']}; {warning}" if "note" in record else warning
    return record
