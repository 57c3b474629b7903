"""Every method on one image, scored: the logic behind the app's Compare page.

The gradient maps share one pass; the multi-pass methods (DT Grad-CAM, Score-CAM) run one at a
time so a caller can show progress between them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from imaging import preprocess
from models.predict import to_input
from models.registry import LoadedModel
from xai.engine import CamMap, Explanation, available_methods, explain_loaded
from xai.metrics import deletion_auc, insertion_auc, localization_scores
from xai.targets import Target

__all__ = ["MULTI_PASS", "Faithfulness", "explain_all", "faithfulness", "method_groups",
           "score_against_mask"]

MULTI_PASS = ("dt_gradcam", "scorecam", "scorecam_fast")


def method_groups(stage_layers: Mapping[str, str], exact_scorecam: bool) -> list[list[str]]:
    """All methods in run order: the shared-pass group first, then each multi-pass method.

    Score-CAM appears once: exact (every channel) or fast (top-k channels).
    """
    skip = "scorecam_fast" if exact_scorecam else "scorecam"
    methods = [m for m in available_methods(stage_layers) if m != skip]
    return [[m for m in methods if m not in MULTI_PASS],
            *[[m] for m in methods if m in MULTI_PASS]]


def explain_all(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    target: Target = None,
    exact_scorecam: bool = False,
    on_step: Callable[[int, int, list[str]], None] | None = None,
) -> Explanation:
    """One explanation holding every method's map; ``on_step(i, n, group)`` before each group."""
    groups = method_groups(loaded.arch.stage_layers, exact_scorecam)
    maps: dict[str, CamMap] = {}
    result = None
    for i, group in enumerate(groups):
        if on_step:
            on_step(i, len(groups), group)
        result = explain_loaded(loaded, rgb, methods=group, target=target)
        maps.update(result.maps)
    assert result is not None  # the shared-pass group is never empty
    return replace(result, maps=maps)


def score_against_mask(maps: Mapping[str, CamMap], mask_rgb: np.ndarray,
                       input_size: int) -> list[dict[str, float | str]]:
    """IoU, Dice, pointing game and energy share of each map against a mask image.

    The mask gets the plain resize to the model's input size (the maps' frame); white is inside.
    Model preprocessing that crops (brain MRI) would move the image but not the mask, so pass
    masks only for models whose preprocessing is ``resize``.
    """
    mask = preprocess(mask_rgb, "resize", input_size).max(axis=2) > 127
    return [{"method": cam.label, **localization_scores(cam.map, mask).as_dict()}
            for cam in maps.values()]


@dataclass(frozen=True)
class Faithfulness:
    """Deletion / insertion AUCs and curves of one map (target probability vs fraction)."""

    label: str
    deletion_auc: float
    insertion_auc: float
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray


def faithfulness(loaded: LoadedModel, rgb: np.ndarray, maps: Mapping[str, CamMap],
                 target_index: int) -> list[Faithfulness]:
    """Deletion and insertion curves for every map (one batched model call per curve chunk)."""
    x = to_input(loaded, rgb)
    results = []
    for cam in maps.values():
        d_auc, d_curve = deletion_auc(loaded.model, x, cam.map, target_index)
        i_auc, i_curve = insertion_auc(loaded.model, x, cam.map, target_index)
        results.append(Faithfulness(cam.label, d_auc, i_auc, d_curve, i_curve))
    return results
