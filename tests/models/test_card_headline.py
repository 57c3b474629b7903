"""Headline figures of a card: Wilson interval and the one sentence clinicians read."""

from __future__ import annotations

import pytest

from models.card import ModelCard, beats_probe, headline, wilson_interval

FULL = {"metrics": {"accuracy": 0.951, "balanced_accuracy": 0.95, "n": 355, "external": {"accuracy": 0.91, "n": 200},
                    "probe": {"accuracy": 0.902, "balanced_accuracy": 0.9, "n": 355}}}


def test_wilson_known_value() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)


@pytest.mark.parametrize("n", [1, 10, 355, 10_000])
def test_wilson_stays_in_the_unit_interval_at_the_extremes(n: int) -> None:
    for successes in (0, n):
        low, high = wilson_interval(successes, n)
        assert 0.0 <= low < high <= 1.0
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_wilson_narrows_with_n_and_widens_with_z() -> None:
    small, large = wilson_interval(9, 10), wilson_interval(900, 1000)
    assert large[1] - large[0] < small[1] - small[0]
    assert wilson_interval(9, 10, z=2.576)[0] < small[0]


@pytest.mark.parametrize("successes, n", [(1, 0), (-1, 5), (6, 5)])
def test_wilson_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, n)


def test_sentence_with_external_and_probe() -> None:
    figures = headline(FULL)
    assert figures.sentence == ("test accuracy 95.1% (95% CI 92.5-97.0%, n=355); "
                                "external 91.0% (n=200); linear-probe baseline 90.2%")
    assert figures.n == 355 and figures.ci == wilson_interval(338, 355)
    assert figures.beats_probe and figures.probe_rule_text == "rule met"


def test_probe_rule_margin_and_saturation() -> None:
    assert beats_probe(0.93, 0.90) and not beats_probe(0.92, 0.90)
    assert beats_probe(0.98, 0.98) and not beats_probe(0.975, 0.98)


def test_sentence_says_when_the_model_misses_the_probe_rule() -> None:
    figures = headline({"metrics": {"accuracy": 0.965, "balanced_accuracy": 0.965, "n": 260,
                                    "probe": {"accuracy": 0.958, "balanced_accuracy": 0.958}}})
    assert figures.beats_probe is False
    assert figures.sentence.endswith("linear-probe baseline 95.8% (rule not met: the model should "
                                     "beat the probe by 3 points of balanced accuracy)")
    assert headline({"metrics": {"accuracy": 0.9, "probe": {"accuracy": 0.8}}}).beats_probe is None


def test_sentence_without_external_or_probe() -> None:
    figures = headline({"metrics": {"accuracy": 0.8, "n": 10}})
    assert figures.sentence == "test accuracy 80.0% (95% CI 49.0-94.3%, n=10)"
    assert figures.external_text == "n/a" and figures.probe_accuracy is None


def test_sentence_with_missing_figures() -> None:
    assert headline({"metrics": {"accuracy": 0.9}}).sentence == "test accuracy 90.0%"
    assert headline({"metrics": {}}).sentence == "no test accuracy recorded"
    assert headline({}).ci_text == "n/a"
    partial = headline({"metrics": {"accuracy": 1.0, "n": 80, "external": {"accuracy": 0.75}}})
    assert partial.sentence == "test accuracy 100.0% (95% CI 95.4-100.0%, n=80); external 75.0%"


def test_headline_of_a_model_card_equals_that_of_its_dict() -> None:
    card = ModelCard(name="m", modality="xray", arch="resnet18", classes=["a", "b"],
                     input_size=64, mean=[0.5] * 3, std=[0.5] * 3, preprocessing="resize",
                     weights_file="model.safetensors", sha256="0" * 64, code_version="test",
                     created="2026-01-01", metrics=FULL["metrics"])
    assert headline(card) == headline(FULL)
