"""The linear probe: ImageNet Lite0 features + logistic regression, C by CV on train only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.helpers import CLASSES, make_image_folder
from training.data import decode_images, list_files
from training.probe import linear_probe, probe_features


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
    """12 generated images per class: the first 8 of each class train, the last 4 test."""
    dataset = list_files(make_image_folder(tmp_path_factory.mktemp("probe"), per_class=12))
    images = decode_images(dataset.paths, "resize", 64)
    test = np.array([int(Path(f).stem.split("_")[1]) >= 8 for f in dataset.files])
    return images[~test], dataset.labels[~test], images[test], dataset.labels[test]


def test_features_are_the_pooled_1280d_vector(tiny_split) -> None:
    train_images = tiny_split[0]
    features = probe_features(train_images[:5], batch_size=2)
    assert features.shape == (5, 1280) and features.dtype == np.float32
    np.testing.assert_allclose(features[:2], probe_features(train_images[:2]), atol=1e-4)


def test_probe_separates_the_classes_and_reports_like_a_card(tiny_split) -> None:
    train_images, train_labels, test_images, test_labels = tiny_split
    report = linear_probe(train_images, train_labels, test_images, test_labels, CLASSES)
    assert report["n"] == 12 and report["n_train"] == 24
    assert report["balanced_accuracy"] >= 0.9 and report["accuracy"] >= 0.9
    assert {"macro_f1", "auc_macro", "per_class", "confusion_matrix"} <= set(report)
    assert report["C_grid"][0] <= report["C"] <= report["C_grid"][1]
    assert report["cv"].startswith("stratified 5-fold")


def test_c_comes_from_the_training_images_only(tiny_split) -> None:
    train_images, train_labels, test_images, test_labels = tiny_split
    first = linear_probe(train_images, train_labels, test_images, test_labels, CLASSES)
    shuffled = np.random.default_rng(1).permutation(test_labels)
    second = linear_probe(train_images, train_labels, test_images.flip(-1), shuffled, CLASSES)
    assert second["C"] == first["C"] and second["cv_log_loss"] == first["cv_log_loss"]
    assert second["accuracy"] != first["accuracy"]  # the test set did change


def test_probe_needs_two_training_images_per_class(tiny_split) -> None:
    train_images, train_labels, test_images, test_labels = tiny_split
    with pytest.raises(ValueError, match="at least two"):
        linear_probe(train_images[:9], train_labels[:9], test_images, test_labels, CLASSES)
