"""Choosing the decision crops on validation data, and scoring a model as the app decides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.calibrate import CANDIDATE_CROPS, choose_crops, fit_temperature, served_scores


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

    def view_logits_of(index: np.ndarray, crops) -> torch.Tensor:
        return table[index][:, [0, *(1 + CANDIDATE_CROPS.index(c) for c in crops)]]

    fields, metrics = served_scores(view_logits_of, labels.numpy(), val, test, ["a", "b", "c"])
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

    def view_logits_of(index: np.ndarray, crops) -> torch.Tensor:
        asked.append(tuple(crops))
        return table[index][:, [0, *(1 + CANDIDATE_CROPS.index(c) for c in crops)]]

    fields, metrics = served_scores(view_logits_of, labels.numpy(), np.arange(60),
                                    np.arange(60, 120), ["a", "b", "c"], crops_allowed=False)
    assert fields["test_time_crops"] == [] and set(asked) == {()}
    alone = table[60:, 0].argmax(1)
    assert metrics["accuracy"] == pytest.approx(float((alone == labels[60:]).float().mean()))
    assert "switched off" in metrics["calibration"]["test_time_crops"]["rule"]
