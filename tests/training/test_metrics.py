"""Metric functions against scikit-learn and hand-computed values; temperature scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from training.calibrate import calibration_record, fit_temperature, fit_threshold
from training.metrics import classification_report, expected_calibration_error, gmean, iba


def _probs_for(predicted: list[int], classes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.0, 0.4, (len(predicted), classes))
    probs[np.arange(len(predicted)), predicted] = 1.0
    return probs / probs.sum(axis=1, keepdims=True)


def test_report_matches_sklearn() -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    pred = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1]
    probs = _probs_for(pred, 3)
    report = classification_report(y, probs, ["a", "b", "c"])
    assert report["n"] == 10 and report["accuracy"] == pytest.approx(0.7)
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert report["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    for c, name in enumerate("abc"):
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(precision_score(y, pred, labels=[c], average="macro"))
        assert row["sensitivity"] == pytest.approx(recall_score(y, pred, labels=[c], average="macro"))
        assert row["auc"] == pytest.approx(roc_auc_score(y == c, probs[:, c]))
    assert report["auc_macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 2, 1], [1, 0, 3]]
    # class a: TP 2, FP 1, FN 1, TN 6 -> specificity 6/7, NPV 6/7
    assert report["per_class"]["a"]["specificity"] == pytest.approx(6 / 7)
    assert report["per_class"]["a"]["npv"] == pytest.approx(6 / 7)


def test_gmean_and_iba_by_hand() -> None:
    cm = np.array([[8, 2], [1, 9]])  # sensitivity of class 1 = 0.9, specificity = 0.8
    assert gmean(cm) == pytest.approx(math.sqrt(0.8 * 0.9))
    # class 0: sens .8 spec .9 -> (1 + .1 * -.1) * .72; class 1: sens .9 spec .8 -> (1 + .01) * .72
    assert iba(cm) == pytest.approx(((1 - 0.01) * 0.72 + (1 + 0.01) * 0.72) / 2)
    cm3 = np.array([[4, 1, 0], [0, 3, 2], [0, 0, 5]])
    assert gmean(cm3) == pytest.approx((0.8 * 0.6 * 1.0) ** (1 / 3))
    sens = np.array([0.8, 0.6, 1.0])
    spec = np.array([10 / 10, 9 / 10, 8 / 10])
    assert iba(cm3, alpha=0.1) == pytest.approx(np.mean((1 + 0.1 * (sens - spec)) * sens * spec))


def test_ece_by_hand() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # bins of width 0.1: {0.9, 0.9} acc 0.5 -> |0.5 - 0.9| * 2/4; {0.6} acc 1 -> 0.4 * 1/4; {0.7} -> 0.3/4
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.2 + 0.1 + 0.075)


def test_temperature_recovers_known_value() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 4, generator=generator) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.0, 1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)
    record = calibration_record(logits, labels)
    assert record["ece_after"] < record["ece_before"] and record["nll_after"] < record["nll_before"]


def test_calibration_without_validation_errors_keeps_temperature_one() -> None:
    labels = torch.tensor([0, 1, 0, 1])
    logits = torch.tensor([[9.0, -9.0], [-9.0, 9.0], [5.0, 0.0], [0.0, 5.0]])
    record = calibration_record(logits, labels)
    assert record["temperature"] == 1.0 and record["validation_errors"] == 0
    assert "not fitted" in record["note"]


def test_suspicious_temperature_is_noted() -> None:
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (200,))
    logits = torch.nn.functional.one_hot(labels, 2).float() * 0.5  # right but timid
    logits[0] = logits[0].flip(0)  # one error, so T is fitted
    record = calibration_record(logits, labels)
    assert record["temperature"] < 0.5 and record["note"].startswith("warning:")


def _two_class(positive: list[float]) -> np.ndarray:
    p = np.array(positive)
    return np.stack([1 - p, p], axis=1)


def test_threshold_maximises_balanced_accuracy_on_validation() -> None:
    # positives score low (a model biased towards class 0): 0.5 misses two of them
    probs = _two_class([0.05, 0.1, 0.2, 0.3, 0.35, 0.45, 0.6, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    cut = fit_threshold(probs, labels)
    assert 0.3 < cut <= 0.35
    report = classification_report(labels, probs, ["no", "yes"], threshold=cut)
    assert report["balanced_accuracy"] == 1.0
    assert classification_report(labels, probs, ["no", "yes"])["balanced_accuracy"] == 0.75


def test_threshold_stays_at_half_when_half_is_as_good() -> None:
    probs = _two_class([0.1, 0.2, 0.8, 0.95])
    assert fit_threshold(probs, np.array([0, 0, 1, 1])) == 0.5


def test_calibration_record_of_two_classes_carries_the_threshold() -> None:
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (400,))
    logits = torch.stack([torch.zeros(400), labels * 2.0 - 1.5 + torch.randn(400)], 1)  # biased
    record = calibration_record(logits, labels)
    assert record["decision_threshold"] != 0.5
    assert record["val_balanced_accuracy_threshold"] >= record["val_balanced_accuracy_half"]
    assert "decision_threshold" not in calibration_record(torch.randn(50, 3), torch.randint(0, 3, (50,)))
    assert "not adopted" not in record.get("note", "")  # a moderate cut is not flagged


def test_an_extreme_threshold_is_not_adopted_and_is_noted() -> None:
    """A rare positive class that scores far below 0.5, yet above the negatives, pulls the
    best cut far below 0.5: it is refused for the best cut from 0.1 to 0.9, with a warning."""
    torch.manual_seed(0)
    labels = (torch.arange(200) % 10 == 0).long()
    logits = torch.stack([torch.zeros(200), torch.where(labels == 1, -3.0, -6.0)
                          + 0.5 * torch.randn(200)], 1)
    record = calibration_record(logits, labels)
    probs = torch.softmax(logits / record["temperature"], 1).numpy()
    assert fit_threshold(probs, labels.numpy(), max_distance=0.5) < 0.1
    assert 0.1 <= record["decision_threshold"] <= 0.9
    assert "not adopted" in record["note"] and record["note"].startswith("warning:")
