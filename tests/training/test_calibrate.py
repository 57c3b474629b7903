"""Choosing the decision crops on validation data, and scoring a model as the app decides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.calibrate import (
    CANDIDATE_CROPS,
    MAX_SHIFTED_RECALL_LOSS,
    choose_crops,
    fit_temperature,
    served_scores,
)
from training.shift import SHIFTS


def _views(informative: tuple[float, ...], n: int = 90, classes: int = 3, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation-like logits ``(n, 1 + len(CANDIDATE_CROPS), C)``: the views named in
    ``informative`` (1.0: the image itself) see the label, the others only noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    columns = []
    for keep in (1.0, *CANDIDATE_CROPS):
        logits = torch.randn(n, classes, generator=generator)
        if keep in informative:
            logits += 1.2 * torch.nn.functional.one_hot(labels, classes)
        columns.append(logits)
    return torch.stack(columns, dim=1), labels


def test_a_crop_that_sees_better_is_chosen() -> None:
    views, labels = _views(informative=(1.0, 0.8))
    chosen, record = choose_crops(views, labels)
    assert chosen == [0.8]
    assert [c["crops"] for c in record["candidates"]] == [[], [0.9], [0.8], [0.9, 0.8]]
    by_crops = {tuple(c["crops"]): c["nll"] for c in record["candidates"]}
    assert by_crops[(0.8,)] == min(by_crops.values()) < by_crops[()]


def test_crops_that_only_add_noise_are_not_chosen() -> None:
    views, labels = _views(informative=(1.0,))
    chosen, record = choose_crops(views, labels)
    assert chosen == [] and record["chosen"] == []


def test_a_small_gain_does_not_buy_extra_views() -> None:
    """Two equally informative views lower the log-loss a little: kept only past the margin."""
    views, labels = _views(informative=(1.0, 0.9, 0.8))
    views[:, 1:] = views[:, :1] + 0.01 * torch.randn_like(views[:, 1:])  # near copies of the image
    assert choose_crops(views, labels)[0] == []


def test_served_scores_decide_on_the_chosen_crops() -> None:
    table, labels = _views(informative=(1.0, 0.8), n=120)
    val, test = np.arange(0, 60), np.arange(60, 120)

    asked = []

    def view_logits_of(index: np.ndarray, crops, shift) -> torch.Tensor:
        asked.append(shift)
        return table[index][:, [0, *(1 + CANDIDATE_CROPS.index(c) for c in crops)]]

    fields, metrics = served_scores(view_logits_of, labels.numpy(), val, test, ["a", "b", "c"])
    assert set(asked) == {None, *SHIFTS}  # every candidate is also scored under every shift
    assert fields["test_time_crops"] == [0.8] and fields["decision_threshold"] is None
    val_mean = table[val][:, [0, 2]].mean(1)
    assert fields["temperature"] == pytest.approx(fit_temperature(val_mean, labels[val]), rel=1e-4)
    decided = table[test][:, [0, 2]].mean(1).argmax(1)
    assert metrics["accuracy"] == pytest.approx(float((decided == labels[test]).float().mean()))
    assert metrics["n"] == 60 and metrics["val"]["n"] == 60
    assert metrics["calibration"]["test_time_crops"]["chosen"] == [0.8]


def test_crops_switched_off_decide_on_the_image_alone() -> None:
    table, labels = _views(informative=(1.0, 0.8), n=120)
    asked = []

    def view_logits_of(index: np.ndarray, crops, shift) -> torch.Tensor:
        asked.append((tuple(crops), shift))
        return table[index][:, [0, *(1 + CANDIDATE_CROPS.index(c) for c in crops)]]

    fields, metrics = served_scores(view_logits_of, labels.numpy(), np.arange(60),
                                    np.arange(60, 120), ["a", "b", "c"], crops_allowed=False)
    assert fields["test_time_crops"] == [] and set(asked) == {((), None)}
    alone = table[60:, 0].argmax(1)
    assert metrics["accuracy"] == pytest.approx(float((alone == labels[60:]).float().mean()))
    assert "switched off" in metrics["calibration"]["test_time_crops"]["rule"]


def _cost_one_class(views: torch.Tensor, labels: torch.Tensor, crop: float, share: float
                    ) -> torch.Tensor:
    """``views`` with the ``crop`` view pushing ``share`` of class 0's images to class 1 hard,
    as a crop that trims what tells a normal film apart might on a wider image."""
    shifted = views.clone()
    victims = torch.nonzero(labels == 0).flatten()[: round(share * int((labels == 0).sum()))]
    shifted[victims, 1 + CANDIDATE_CROPS.index(crop), 1] += 40.0
    return shifted


def test_a_crop_that_costs_a_class_under_a_shift_is_not_chosen() -> None:
    views, labels = _views(informative=(1.0, 0.8), n=120, classes=2)
    assert choose_crops(views, labels)[0] == [0.8]  # chosen on the unshifted images alone
    shifted = {"wider aspect x1.3": _cost_one_class(views, labels, 0.8, 0.5), "blur": views}
    chosen, record = choose_crops(views, labels, shifted, ["normal", "pneumonia"])
    assert 0.8 not in chosen
    by_crops = {tuple(c["crops"]): c for c in record["candidates"]}
    assert by_crops[()]["largest_shifted_loss"]["loss"] == 0
    loss = by_crops[(0.8,)]["largest_shifted_loss"]
    assert (loss["class"], loss["shift"]) == ("normal", "wider aspect x1.3")
    recalls = by_crops[(0.8,)]["shifted_recall"]["wider aspect x1.3"]
    assert recalls["normal"] < by_crops[()]["shifted_recall"]["wider aspect x1.3"]["normal"] \
        - MAX_SHIFTED_RECALL_LOSS
    assert "under none of the shifts (wider aspect x1.3, blur)" in record["rule"]


def test_a_class_loss_counts_even_where_the_image_alone_is_weaker_elsewhere() -> None:
    """The image alone's own weak spot (pneumonias under blur) does not excuse the crop's."""
    views, labels = _views(informative=(1.0, 0.8), n=120, classes=2)
    blurred = views.clone()
    blurred[labels == 1, 0, 0] += 40.0  # the image alone misses every pneumonia under blur
    shifted = {"wider aspect x1.3": _cost_one_class(views, labels, 0.8, 0.3), "blur": blurred}
    chosen, record = choose_crops(views, labels, shifted, ["normal", "pneumonia"])
    assert 0.8 not in chosen


def test_a_crop_that_holds_under_the_shifts_is_still_chosen() -> None:
    views, labels = _views(informative=(1.0, 0.8), n=120, classes=2)
    harmless = {"blur": views + 0.01, "JPEG quality 30": views}
    chosen, record = choose_crops(views, labels, harmless, ["normal", "pneumonia"])
    assert chosen == [0.8]
    assert all(set(c["shifted_recall"]) == set(harmless) for c in record["candidates"])
