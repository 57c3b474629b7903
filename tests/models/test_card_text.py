"""A model card in plain words: data, split, recipe and metrics without JSON keys."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from models.card import ModelCard
from models.card_text import (
    METRICS,
    checks_text,
    data_text,
    metric_rows,
    model_text,
    per_class_rows,
    recipe_text,
    split_text,
)
from tests.conftest import register_tiny_model

SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> ModelCard:
    root = tmp_path_factory.mktemp("weights")
    register_tiny_model(root, "xray")
    return ModelCard.read(root / "tiny-xray-resnet18")


def test_data_split_and_recipe_read_as_sentences(card: ModelCard) -> None:
    full = replace(
        card,
        data={"name": "Chest X-rays", "licence": "CC BY 4.0", "images": 1200,
              "sources": [{"source": "../shared/data/chest-xray", "images": 800},
                          {"source": "../shared/data/more=pneumonia", "images": 0}],
              "counts": {"normal": 500, "pneumonia": 700}},
        split={"method": "stratified grouped ratio split", "seed": 0, "ratios": [8.0, 1.0, 1.0],
               "counts": {"train": {"normal": 400, "pneumonia": 560},
                          "val": {"normal": 50, "pneumonia": 70},
                          "test": {"normal": 50, "pneumonia": 70}},
               "grouping": "dHash 16x16, Hamming distance <= 24", "groups": 1100,
               "largest_group": 9, "test_sha256": "ab" * 32},
        recipe={"name": "spine-2026", "source": "Ahmad et al. 2026", "regime": "finetune",
                "pretrained": "imagenet", "epochs": 20, "warmup_epochs": 3, "patience": 4,
                "batch_size": 32, "optimizer": "adamw", "lr": 4e-4, "schedule": "cosine",
                "weight_decay": 0.01, "label_smoothing": 0.05, "rotation": 10, "hflip": True,
                "crop_scale": 0.6, "balance": "sampler", "notes": ["rotation: our choice"],
                "region_weight": 1.0, "ema": 0.95})
    full = replace(full, data={**full.data, "region_masks": {"folders": ["masks"], "images": 720}})
    data = " ".join(data_text(full))
    assert "**Chest X-rays**, licence: CC BY 4.0" in data
    assert "1,200 images from chest-xray (800), more (all pneumonia)." in data
    assert "Per class: normal 500, pneumonia 700." in data
    split = " ".join(split_text(full))
    assert "Stratified grouped ratio split 8:1:1 (training : validation : test, seed 0)." in split
    assert "Images: training 960; validation 120; test 120." in split
    assert "1,100 groups, the largest of 9 images" in split and "abababababab..." in split
    recipe = " ".join(recipe_text(full))
    assert "Every layer fine-tuned from ImageNet weights: resnet18 at 64 px." in recipe
    assert "Up to 20 epochs after 3 epochs training only the head" in recipe
    assert "Optimiser AdamW, learning rate 0.0004 (cosine decay)" in recipe
    assert "rotation up to 10 degrees, horizontal flips, random crops keeping 60%" in recipe
    assert "classes balanced by the sampler" in recipe and "Note: rotation: our choice." in recipe
    assert "Attention supervision (weight 1): 720 images carry a lesion mask" in recipe
    assert "moving average over the last ~20 training steps (exponential, decay 0.95)" in recipe
    for text in (data, split, recipe):
        assert not SNAKE.search(text.replace("resnet18", "")), text


@pytest.mark.parametrize(("stage", "said"), [("full", False), ("head", True)])
def test_the_kept_epoch_is_said_and_a_head_only_one_is_flagged(card: ModelCard, stage: str,
                                                               said: bool) -> None:
    run = replace(card, recipe={"regime": "finetune", "epochs": 12, "warmup_epochs": 3},
                  metrics={**card.metrics, "training": {"epochs_run": 7, "best_epoch": 3,
                                                        "best_stage": stage}})
    recipe = " ".join(recipe_text(run))
    assert "Kept: epoch 3 of 7, the lowest validation loss" in recipe
    assert ("a head-only epoch: no fine-tuning epoch beat it" in recipe) is said


def test_the_views_a_model_decides_on_are_said(card: ModelCard) -> None:
    assert model_text(card)[-1] == "Decides on the image alone"
    cropped = model_text(replace(card, test_time_crops=[0.9, 0.8]))[-1]
    assert cropped.startswith("Decides on the image and its 90% and 80% centre crops")
    flipped = model_text(replace(card, test_time_flips=["hflip", "rot180"]))[-1]
    assert flipped.startswith("Decides on the image and its left-right mirror image and half turn (")
    both = model_text(replace(card, test_time_crops=[0.9], test_time_flips=["vflip"]))[-1]
    assert both.startswith("Decides on the image and its 90% centre crop and upside-down mirror image")
    assert both.endswith("chosen because they lowered the validation log-loss)")
    pooled = {"calibration": {"test_time_views": {"pooled": {"runs": ["f0", "f1", "f2"],
                                                             "folds": [0, 1, 2], "n": 1419}}}}
    assert model_text(replace(card, test_time_flips=["vflip"], metrics=pooled))[-1].endswith(
        "lowered the log-loss pooled over 1,419 validation images of 3 cross-validation runs of "
        "the same recipe)")


def test_a_bare_card_gives_fewer_sentences_not_errors(card: ModelCard) -> None:
    bare = replace(card, data={}, split={}, recipe={}, metrics={})
    assert data_text(bare) == ["**Unnamed data set**"]
    assert split_text(bare) == ["No split recorded."]
    assert recipe_text(bare) == ["No recipe recorded."]
    assert metric_rows(bare.metrics) == [] and per_class_rows(bare.metrics) == []
    assert checks_text(bare) == []


def test_metrics_have_plain_names_and_a_meaning() -> None:
    metrics = {"accuracy": 0.9876, "iba": 0.9753, "gmean": 0.9876, "ece": 0.0093, "n": 1620,
               "parameters": 3373570, "auc_macro": 0.9998, "new_score": 0.5,
               "evaluated_on": "test", "per_class": {"a": {"sensitivity": 0.9, "specificity": 1.0,
                                                           "ppv": 0.8, "npv": 0.95, "f1": 0.85,
                                                           "auc": None, "support": 40}}}
    rows = {r["metric"]: r for r in metric_rows(metrics)}
    assert rows["Index of balanced accuracy (IBA)"]["value"] == "97.5%"
    assert "sensitivities" in rows["G-mean"]["meaning"]
    assert rows["Calibration error (ECE)"]["value"] == "0.0093"
    assert rows["Test images"]["value"] == "1,620" and rows["Parameters"]["value"] == "3,373,570"
    assert rows["New score"]["value"] == "50.0%"  # unknown keys still get words
    assert not any(SNAKE.search(r["metric"]) for r in rows.values())
    assert all(meaning for _, meaning in METRICS.values())
    (row,) = per_class_rows(metrics)
    assert row == {"class": "a", "Sensitivity (recall)": "90.0%", "Specificity": "100.0%",
                   "PPV (precision)": "80.0%", "NPV": "95.0%", "F1": "85.0%", "ROC AUC": "n/a",
                   "Test images": "40"}


def test_checks_name_probe_external_and_cross_source(card: ModelCard) -> None:
    checked = replace(card, metrics={
        "external": {"accuracy": 0.91, "n": 200}, "probe": {"accuracy": 0.8},
        "cross_source": {"runs": [{"trained_on": "a", "tested_on": "b", "accuracy": 0.887,
                                   "n": 2273, "own_test_accuracy": 0.945}]},
        "twins": {"copies": 1, "copy_correlation": 0.95,
                  "model": {"less_alike_half": {"n": 177, "accuracy": 0.9887,
                                                "ci95": [0.9598, 0.9969]},
                            "more_alike_half": {"n": 178, "accuracy": 1.0}},
                  "nearest_neighbour": {"pixels": {"accuracy": 0.904},
                                        "features": {"accuracy": 0.896}}}})
    assert checks_text(checked) == [
        "On images from another source: 91.0% accuracy (n=200).",
        "Linear probe on frozen ImageNet features (the floor to beat): 80.0% on the same test "
        "images.",
        "On the half of the test images least like any training image: 98.9% (n=177, 95% CI "
        "96.0%-99.7%); on the other half 100.0% (n=178). Giving each test image the class of its "
        "most similar training image scores 90.4% (pixels) and 89.6% (ImageNet features); test "
        "images that nearly copy a training image (thumbnail correlation > 0.95): 1.",
        "Same recipe trained on a only, scored on b: 88.7% (n=2,273), against 94.5% on its own "
        "test split."]


def test_shipped_cards_render() -> None:
    from models.registry import list_cards

    for _, shipped in list_cards():
        if isinstance(shipped, ModelCard):
            assert data_text(shipped) and split_text(shipped) and recipe_text(shipped)
            assert metric_rows(shipped.metrics)[0]["metric"] == "Accuracy"


def test_shipped_checks_belong_to_each_cards_test_split() -> None:
    """The probe and near-copy reports stored in a shipped card were measured on its current
    test split (a retrained model needs ``bench/probe_baseline.py`` and ``bench/twins.py``
    with ``--write-cards`` again), and the Models page words them."""
    from models.registry import list_cards

    diagnosis = [c for _, c in list_cards() if isinstance(c, ModelCard) and c.kind == "diagnosis"]
    assert diagnosis
    for shipped in diagnosis:
        for check in ("probe", "twins"):
            report = shipped.metrics[check]
            assert report["test_sha256"] == shipped.split["test_sha256"], (shipped.name, check)
            assert report["n"] == shipped.metrics["n"] == len(shipped.split["test_files"])
        twins = shipped.metrics["twins"]
        assert twins["model"]["all"]["accuracy"] == pytest.approx(shipped.metrics["accuracy"])
        assert any("least like any training image" in line for line in checks_text(shipped))
