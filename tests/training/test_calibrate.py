"""Choosing the decision crops and flips on validation data, and scoring a model as the app
decides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.card import FLIPS as CARD_FLIPS
from training.calibrate import (
    CANDIDATE_CROPS,
    MAX_SHIFTED_RECALL_LOSS,
    adopt,
    choose_views,
    fit_temperature,
    served_scores,
    trained_flips,
)
from training.shift import SHIFTS

FLIPS = tuple(CARD_FLIPS)  # hflip, vflip, rot180


def _views(informative: tuple[float | str, ...], n: int = 90, classes: int = 3, seed: int = 0,
           flips: tuple[str, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation-like logits ``(n, 1 + len(CANDIDATE_CROPS) + len(flips), C)``: the views named
    in ``informative`` (1.0: the image itself) see the label, the others only noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    columns = []
    for keep in (1.0, *CANDIDATE_CROPS, *flips):
        logits = torch.randn(n, classes, generator=generator)
        if keep in informative:
            logits += 1.2 * torch.nn.functional.one_hot(labels, classes)
        columns.append(logits)
    return torch.stack(columns, dim=1), labels


def _columns(crops, flips=()) -> list[int]:
    return [0, *(1 + CANDIDATE_CROPS.index(c) for c in crops),
            *(1 + len(CANDIDATE_CROPS) + FLIPS.index(f) for f in flips)]


def test_a_crop_that_sees_better_is_chosen() -> None:
    views, labels = _views(informative=(1.0, 0.8))
    chosen, flips, record = choose_views(views, labels)
    assert chosen == [0.8] and flips == []
    assert [c["crops"] for c in record["candidates"]] == [[], [0.9], [0.8], [0.9, 0.8]]
    by_crops = {tuple(c["crops"]): c["nll"] for c in record["candidates"]}
    assert by_crops[(0.8,)] == min(by_crops.values()) < by_crops[()]


def test_crops_that_only_add_noise_are_not_chosen() -> None:
    views, labels = _views(informative=(1.0,))
    chosen, flips, record = choose_views(views, labels)
    assert chosen == [] and record["chosen"] == {"crops": [], "flips": []}


def test_a_small_gain_does_not_buy_extra_views() -> None:
    """Two equally informative views lower the log-loss a little: kept only past the margin."""
    views, labels = _views(informative=(1.0, 0.9, 0.8))
    views[:, 1:] = views[:, :1] + 0.01 * torch.randn_like(views[:, 1:])  # near copies of the image
    assert choose_views(views, labels)[0] == []


def test_flips_that_see_better_are_chosen_together_and_only_those_trained() -> None:
    """Flips are tried all at once, with and without each crop set: three informative flips
    beat the image alone, and a crop that adds only noise stays out."""
    views, labels = _views(informative=(1.0, *FLIPS), flips=FLIPS)
    crops, flips, record = choose_views(views, labels, flips=FLIPS)
    assert crops == [] and flips == list(FLIPS)
    first = record["candidates"][0]
    assert len(record["candidates"]) == 8 and (first["crops"], first["flips"]) == ([], [])
    assert "with and without the flips" in record["rule"]
    assert trained_flips({"hflip": True, "vflip": True}) == list(FLIPS)
    assert trained_flips({"hflip": True, "vflip": False}) == ["hflip"]
    assert trained_flips({"hflip": False}) == []


def test_adopt_skips_vetoed_views_and_needs_the_margin() -> None:
    alone = {"crops": [], "flips": [], "nll": 0.100}
    vetoed = {"crops": [0.8], "flips": [], "nll": 0.050, "vetoed": True}
    close = {"crops": [0.9], "flips": [], "nll": 0.097}
    better = {"crops": [], "flips": ["hflip"], "nll": 0.090}
    assert adopt([alone, vetoed, close]) is alone  # 3 % below: not worth a view
    assert adopt([vetoed, close, better, alone]) is better  # wherever the image alone is listed


def test_served_scores_decide_on_the_chosen_crops() -> None:
    table, labels = _views(informative=(1.0, 0.8), n=120)
    val, test = np.arange(0, 60), np.arange(60, 120)

    asked = []

    def view_logits_of(index: np.ndarray, crops, flips, shift) -> torch.Tensor:
        asked.append(shift)
        return table[index][:, _columns(crops, flips)]

    fields, metrics = served_scores(view_logits_of, labels.numpy(), val, test, ["a", "b", "c"])
    assert set(asked) == {None, *SHIFTS}  # every candidate is also scored under every shift
    assert fields["test_time_crops"] == [0.8] and fields["decision_threshold"] is None
    assert fields["test_time_flips"] == []
    val_mean = table[val][:, [0, 2]].mean(1)
    assert fields["temperature"] == pytest.approx(fit_temperature(val_mean, labels[val]), rel=1e-4)
    decided = table[test][:, [0, 2]].mean(1).argmax(1)
    assert metrics["accuracy"] == pytest.approx(float((decided == labels[test]).float().mean()))
    assert metrics["n"] == 60 and metrics["val"]["n"] == 60
    assert metrics["calibration"]["test_time_views"]["chosen"] == {"crops": [0.8], "flips": []}


def test_served_scores_decide_on_the_chosen_flips() -> None:
    table, labels = _views(informative=(1.0, *FLIPS), n=120, flips=FLIPS)

    def view_logits_of(index: np.ndarray, crops, flips, shift) -> torch.Tensor:
        return table[index][:, _columns(crops, flips)]

    fields, metrics = served_scores(view_logits_of, labels.numpy(), np.arange(60),
                                    np.arange(60, 120), ["a", "b", "c"], flips=FLIPS)
    assert fields["test_time_crops"] == [] and fields["test_time_flips"] == list(FLIPS)
    decided = table[60:][:, _columns((), FLIPS)].mean(1).argmax(1)
    assert metrics["accuracy"] == pytest.approx(float((decided == labels[60:]).float().mean()))


def test_crops_switched_off_decide_on_the_image_alone() -> None:
    table, labels = _views(informative=(1.0, 0.8), n=120)
    asked = []

    def view_logits_of(index: np.ndarray, crops, flips, shift) -> torch.Tensor:
        asked.append((tuple(crops), tuple(flips), shift))
        return table[index][:, _columns(crops, flips)]

    fields, metrics = served_scores(view_logits_of, labels.numpy(), np.arange(60),
                                    np.arange(60, 120), ["a", "b", "c"], crops_allowed=False)
    assert fields["test_time_crops"] == [] and set(asked) == {((), (), None)}
    alone = table[60:, 0].argmax(1)
    assert metrics["accuracy"] == pytest.approx(float((alone == labels[60:]).float().mean()))
    assert "switched off" in metrics["calibration"]["test_time_views"]["rule"]


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
    assert choose_views(views, labels)[0] == [0.8]  # chosen on the unshifted images alone
    shifted = {"wider aspect x1.3": _cost_one_class(views, labels, 0.8, 0.5), "blur": views}
    chosen, _, record = choose_views(views, labels, shifted, ["normal", "pneumonia"])
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
    chosen, _, record = choose_views(views, labels, shifted, ["normal", "pneumonia"])
    assert 0.8 not in chosen


def test_a_crop_that_holds_under_the_shifts_is_still_chosen() -> None:
    views, labels = _views(informative=(1.0, 0.8), n=120, classes=2)
    harmless = {"blur": views + 0.01, "JPEG quality 30": views}
    chosen, _, record = choose_views(views, labels, harmless, ["normal", "pneumonia"])
    assert chosen == [0.8]
    assert all(set(c["shifted_recall"]) == set(harmless) for c in record["candidates"])


@pytest.mark.parametrize(("lost", "vetoed"), [(1, False), (2, True)])
def test_a_veto_needs_two_images_of_a_small_class(lost: int, vetoed: bool) -> None:
    """With 20 validation images of a class one image is 0.05 of its recall, above the limit
    alone: a single image that flips under one shift is chance, two are a loss."""
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(40) % 2
    signal = 4.0 * torch.nn.functional.one_hot(labels, 2)  # every view right: only the cost counts
    views = torch.stack([signal + torch.randn(40, 2, generator=generator) for _ in range(3)], 1)
    shifted = {"half resolution": _cost_one_class(views, labels, 0.8, lost / 20), "blur": views}
    chosen, _, record = choose_views(views, labels, shifted, ["normal", "pneumonia"])
    entry = next(c for c in record["candidates"] if c["crops"] == [0.8])
    assert entry["largest_shifted_loss"]["images"] == lost
    assert entry["largest_shifted_loss"]["loss"] > MAX_SHIFTED_RECALL_LOSS
    assert entry["vetoed"] is vetoed and (0.8 in chosen) is not vetoed
