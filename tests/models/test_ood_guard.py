"""The shipped out-of-distribution guards on real foreign images (training.ood_sets).

Uses the staged DICOM files where present, else pydicom's bundled ones; ``bench/ood.py`` has
the full AUROC table against each model's test split.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.registry import ModelUnavailable, find_card, find_router, load_model
from tests.conftest import shared_data_root
from training.ood_sets import FAMILIES, ood_family
from training.trust import flagged_by_guard, model_signals

# Share of each family a shipped guard must flag (measured: bench/results/ood.json).
ROUTER_FLAGS = 0.9
MODEL_FLAGS = {"generated": 0.9, "photos": 0.8, "documents": 1.0, "dicom_other": 0.6}


def _flagged(loaded, family: str) -> float:
    from imaging import preprocess

    images = [preprocess(rgb, loaded.card.preprocessing, loaded.card.input_size)
              for _, rgb in ood_family(family, shared_data_root())]
    views = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return float(flagged_by_guard(loaded, *model_signals(loaded, views)).mean())


def _load(find):
    try:
        found = find()
    except ModelUnavailable as exc:
        pytest.skip(str(exc))
    return load_model(found[0] if isinstance(found, tuple) else found, device="cpu")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_router_flags_foreign_images(family: str) -> None:
    router = _load(find_router)
    assert _flagged(router, family) >= ROUTER_FLAGS


@pytest.mark.parametrize("modality", ["endoscopy", "histology", "mri", "xray"])
def test_each_model_flags_foreign_images(modality: str) -> None:
    loaded = _load(lambda: find_card(modality))
    if loaded.guard is None:
        pytest.fail(f"{loaded.card.name} has no fitted guard: run python -m training.trust")
    shares = {family: _flagged(loaded, family) for family in MODEL_FLAGS}
    assert all(shares[f] >= MODEL_FLAGS[f] for f in MODEL_FLAGS), shares
