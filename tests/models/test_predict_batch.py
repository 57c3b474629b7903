"""Batched prediction and routing agree with the one-image road, and fixed-size passes make an
image's result independent of the images batched with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imaging import load_path
from models.predict import model_view, predict, predict_batch
from models.registry import load_for_modality
from models.route import load_router, route, route_batch
from tests.batch.inputs import capsule_frames


@pytest.fixture(scope="module")
def capsule(shared_data: Path) -> list[np.ndarray]:
    return [load_path(path).rgb for path in capsule_frames(shared_data, 5)]


@pytest.fixture(scope="module")
def endoscopy():
    return load_for_modality("endoscopy", device="cpu")


def test_a_batch_predicts_what_each_image_predicts_alone(endoscopy, capsule) -> None:
    views = [model_view(endoscopy, rgb) for rgb in capsule]
    batched = predict_batch(endoscopy, views, pass_rows=8)
    for rgb, result in zip(capsule, batched, strict=True):
        alone = predict(endoscopy, rgb)
        assert (result.label, result.in_distribution, result.uncertain, result.tta_agreement) == (
            alone.label, alone.in_distribution, alone.uncertain, alone.tta_agreement)
        assert result.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
        assert result.ood_score == pytest.approx(alone.ood_score, abs=1e-5)
    assert {r.label for r in batched} == {"bleeding", "non-bleeding"}
    plain = predict_batch(endoscopy, views[:2], views=False)
    assert [p.tta_agreement for p in plain] == [1.0, 1.0]
    assert [p.label for p in plain] == [r.label for r in batched[:2]]


def test_fixed_passes_give_an_image_the_same_bits_whatever_its_neighbours(endoscopy, capsule) -> None:
    views = [model_view(endoscopy, rgb) for rgb in capsule]
    first = predict_batch(endoscopy, views, pass_rows=16)
    shuffled = predict_batch(endoscopy, [views[4], views[2], views[0]], pass_rows=16)
    for mine, other in ((first[4], shuffled[0]), (first[2], shuffled[1]), (first[0], shuffled[2])):
        assert mine.probabilities == other.probabilities  # exact, not approximate
        assert (mine.ood_score, mine.uncertainty) == (other.ood_score, other.uncertainty)
    assert predict_batch(endoscopy, []) == []


def test_routing_a_batch_matches_routing_one_by_one(capsule, shared_data: Path) -> None:
    router = load_router()
    if router is None:
        pytest.skip("no modality router installed")
    mri = load_path(sorted((shared_data / "brain-tumor-mri/glioma").glob("*.jpg"))[0]).rgb
    images = [*capsule[:2], mri]
    views = [model_view(router, rgb) for rgb in images]
    batched = route_batch(router, views, [None, "xray", None], pass_rows=8)
    assert [r.modality for r in batched] == ["endoscopy", "xray", "mri"]
    assert [r.source for r in batched] == ["router", "dicom", "router"]
    for image, result in zip(images, batched, strict=True):
        assert result.router.probabilities == pytest.approx(
            route(image, router).router.probabilities, abs=1e-5)
    assert batched[1].warnings, "a tag contradicting a sure router is flagged"
    insisted = route_batch(None, [], [None, "mri"], "xray")
    assert [(r.modality, r.source, r.router) for r in insisted] == [("xray", "user", None)] * 2
