"""Temperature scaling (Guo et al. 2017): one scalar T fitted on validation logits.

Probabilities at inference are ``softmax(logits / T)`` (:func:`models.predict.probabilities`);
T changes confidences, never the predicted class.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from models.predict import probabilities
from training.metrics import expected_calibration_error

__all__ = ["SUSPICIOUS_TEMPERATURE", "calibration_record", "fit_temperature"]


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


# A fitted temperature below this sharpens an already confident model: a sign of a validation
# split too easy to calibrate on (near-duplicates of training images, or too few errors).
SUSPICIOUS_TEMPERATURE = 0.5


def calibration_record(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | str]:
    """Fit T on these (validation) logits; ECE and NLL before and after, and a ``note`` when the
    fit is degenerate (no validation errors: T stays 1, since the NLL then falls without bound
    as T -> 0) or suspicious (T < 0.5)."""
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
    return record
