"""Every method on one image, scored and ranked: the logic behind the app's Compare page.

The shared-pass maps come from one pass; the methods with passes of their own (DT Grad-CAM,
Score-CAM) run one at a time so a caller can show progress between them. Which method needs
which pass is the registry's knowledge (:func:`xai.registry.method_info`).

Rankings are honest about ties: a rank shared by several methods reads ``"2="``, and a column
is highlighted only where its best value is not shared by every method. Reference rows (the
whole frame, the ideal map on the CAM grid; see :mod:`xai.localize`) are shown, never ranked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from models.predict import to_input
from models.registry import LoadedModel
from xai.engine import CamMap, Explanation, available_methods, explain_loaded, method_label
from xai.localize import grid_of, ideal_map_scores, score_maps, whole_frame_scores
from xai.metrics import PerturbationCurve, perturbation_curve
from xai.registry import OWN_PASSES, method_info, method_names
from xai.targets import Target

__all__ = ["Faithfulness", "Ranking", "explain_all", "faithfulness", "faithfulness_ranking",
           "localisation_ranking", "method_groups", "rank_labels", "score_against_mask",
           "step_text"]


def method_groups(stage_layers: Mapping[str, str], exact_scorecam: bool) -> list[list[str]]:
    """All methods in run order: the shared-pass group first, then each own-pass method.

    A method with a fast variant appears once: the exact one when ``exact_scorecam``, else the
    variant (Score-CAM or fast Score-CAM).
    """
    own = set(method_names(OWN_PASSES))
    variants = {method_info(n).variant_of: n for n in own if method_info(n).variant_of}
    skip = set(variants.values()) if exact_scorecam else set(variants)
    methods = [m for m in available_methods(stage_layers) if m not in skip]
    return [[m for m in methods if m not in own], *[[m] for m in methods if m in own]]


def step_text(group: Sequence[str]) -> str:
    """Progress text for a group of :func:`method_groups`, in display names."""
    labels = [method_label(m) for m in group]
    if len(labels) == 1:
        return f"Computing {labels[0]} (passes of its own)..."
    return f"Computing {len(labels)} maps from one shared pass ({', '.join(labels)})..."


def explain_all(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    target: Target = None,
    exact_scorecam: bool = False,
    on_step: Callable[[int, int, list[str]], None] | None = None,
) -> Explanation:
    """One explanation holding every method's map; ``on_step(i, n, group)`` before each group
    (:func:`step_text` words it)."""
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


@dataclass(frozen=True)
class Ranking:
    """Rows for a table: one per method (ranked), then the reference rows (not ranked).

    ``rows``: dicts with ``method``, ``rank`` (``"1"``, ``"2="`` for a shared rank, ``"-"`` when
    unscored) and the score ``columns`` (display names, in order). ``best``: per column, the row
    indices to highlight (the best value among methods; none when every method has it).
    ``references``: the indices of the reference rows. ``notes``: sentences to show under the
    table.
    """

    columns: list[str]
    rows: list[dict[str, object]]
    best: dict[str, list[int]]
    references: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def rank_labels(keys: Sequence[tuple[float, ...] | None]) -> list[str]:
    """Competition ranks of score tuples (higher is better, compared in order): ``"1"``,
    ``"2="`` when shared, ``"-"`` for ``None`` (unscored)."""
    scored = sorted((k for k in keys if k is not None), reverse=True)
    labels = []
    for key in keys:
        if key is None:
            labels.append("-")
            continue
        rank = 1 + sum(1 for other in scored if other > key)
        labels.append(f"{rank}=" if scored.count(key) > 1 else str(rank))
    return labels


def _best_cells(rows: Sequence[Mapping[str, object]], columns: Mapping[str, bool],
                decimals: int) -> dict[str, list[int]]:
    """Per column (True: higher is better), the rows holding the best rounded value, unless
    every scored row holds it (then nothing stands out)."""
    best: dict[str, list[int]] = {}
    for column, higher in columns.items():
        values = {i: round(float(v), decimals) for i, row in enumerate(rows)
                  if isinstance(v := row.get(column), int | float) and not math.isnan(v)}
        if not values:
            continue
        top = (max if higher else min)(values.values())
        winners = [i for i, v in values.items() if v == top]
        if len(winners) < len(values):
            best[column] = winners
    return best


LOCALISATION_COLUMNS = {"iou": "IoU", "dice": "Dice", "pointing": "pointing game",
                        "energy": "energy share"}
"""Score key -> column name of the localisation table."""


def localisation_ranking(scores: Mapping[str, Mapping[str, float]],
                         references: Sequence[tuple[str, Mapping[str, float]]] = (),
                         decimals: int = 3) -> Ranking:
    """Methods ranked by IoU, then Dice, then energy share (rounded to ``decimals``, as shown);
    ``scores`` maps a method name to its localisation scores."""
    def row(name: str, values: Mapping[str, float]) -> dict[str, object]:
        return {"method": name, **{column: round(float(values[key]), decimals)
                                   for key, column in LOCALISATION_COLUMNS.items()}}

    rows = [row(method_label(name), s) for name, s in scores.items()]
    keys = [tuple(round(float(s[k]), decimals) for k in ("iou", "dice", "energy"))
            for s in scores.values()]
    for entry, rank in zip(rows, rank_labels(keys), strict=True):
        entry["rank"] = rank
    columns = list(LOCALISATION_COLUMNS.values())
    best = _best_cells(rows, dict.fromkeys(columns, True), decimals)
    start = len(rows)
    rows += [{**row(name, s), "rank": ""} for name, s in references]
    notes = [] if best else ["Every method scores the same here: the table ranks nothing."]
    return Ranking(columns, rows, best, list(range(start, len(rows))), notes)


def score_against_mask(maps: Mapping[str, CamMap], mask_rgb: np.ndarray, *,
                       target_layer: str = "", threshold: str = "otsu",
                       region: str = "box") -> Ranking:
    """IoU, Dice, pointing game and energy share of each map against a mask image, ranked,
    with the whole-frame and ideal-grid reference rows of :mod:`xai.localize`.

    Each map is resized to the mask (white is inside, e.g. a Kvasir-SEG polyp mask as it is;
    score pixel masks with ``region="mask"``), as ``python -m xai.localize`` does. Model
    preprocessing that crops (brain MRI) would move the image but not the mask, so pass masks
    only for models whose preprocessing keeps the whole image (:data:`imaging.WHOLE_IMAGE`).
    The ideal map uses the grid of the maps at ``target_layer``.
    """
    gt = np.asarray(mask_rgb)
    gt = (gt.max(axis=2) if gt.ndim == 3 else gt) > 127
    references = [("(whole frame)", whole_frame_scores(gt))]
    grid = grid_of(maps, target_layer)
    if grid is not None:
        references.append((f"(ideal {grid[0]} x {grid[1]} map)",
                           ideal_map_scores(gt, grid, threshold, region)))
    return localisation_ranking(score_maps(maps, gt, threshold, region), references)


@dataclass(frozen=True)
class Faithfulness:
    """Deletion and insertion curves of one map (None for a flat map: it orders no pixel)."""

    name: str
    label: str
    deletion: PerturbationCurve | None
    insertion: PerturbationCurve | None

    @property
    def deletion_auc(self) -> float:
        """Area under the rescaled deletion curve (lower is better; NaN when not scored)."""
        return self.deletion.auc if self.deletion else math.nan

    @property
    def insertion_auc(self) -> float:
        """Area under the rescaled insertion curve (higher is better; NaN when not scored)."""
        return self.insertion.auc if self.insertion else math.nan

    @property
    def deletion_curve(self) -> np.ndarray:
        """The rescaled deletion curve (empty for a flat map)."""
        return self.deletion.curve if self.deletion else np.empty(0, np.float32)

    @property
    def insertion_curve(self) -> np.ndarray:
        """The rescaled insertion curve (empty for a flat map)."""
        return self.insertion.curve if self.insertion else np.empty(0, np.float32)


def faithfulness(loaded: LoadedModel, rgb: np.ndarray, maps: Mapping[str, CamMap],
                 target_index: int, *, steps: int = 50, baseline: str = "mean",
                 on_step: Callable[[int, int, str], None] | None = None) -> list[Faithfulness]:
    """Deletion and insertion curves (:func:`xai.metrics.perturbation_curve`: target log-odds,
    rescaled per image) for every map; ``on_step(i, n, label)`` before each map."""
    x = to_input(loaded, rgb)
    results = []
    for i, (name, cam) in enumerate(maps.items()):
        if on_step:
            on_step(i, len(maps), cam.label)
        if cam.flat:
            results.append(Faithfulness(name, cam.label, None, None))
            continue
        curves = [perturbation_curve(loaded.model, x, cam.map, target_index, kind,
                                     baseline=baseline, steps=steps)
                  for kind in ("deletion", "insertion")]
        results.append(Faithfulness(name, cam.label, *curves))
    return results


def faithfulness_ranking(results: Sequence[Faithfulness], decimals: int = 3) -> Ranking:
    """Methods ranked by insertion minus deletion AUC (higher is better), then insertion; flat
    maps and uninformative curves unranked, with the reason in ``notes``."""
    rows: list[dict[str, object]] = []
    keys: list[tuple[float, ...] | None] = []
    for r in results:
        d, i = round(r.deletion_auc, decimals), round(r.insertion_auc, decimals)
        both = not (math.isnan(d) or math.isnan(i))
        rows.append({"method": r.label, "deletion AUC": d, "insertion AUC": i,
                     "insertion - deletion": round(i - d, decimals) if both else math.nan})
        keys.append((round(i - d, decimals), i) if both else None)
    for row, rank in zip(rows, rank_labels(keys), strict=True):
        row["rank"] = rank
    columns = {"deletion AUC": False, "insertion AUC": True, "insertion - deletion": True}
    notes = []
    flat = [r.label for r in results if r.deletion is None]
    if flat:
        notes.append(f"Not scored, flat map (no pixel order): {', '.join(flat)}.")
    curve = next((c for r in results for c in (r.deletion, r.insertion)
                  if c is not None and not c.informative), None)
    if curve is not None:
        notes.append(f"Not informative on this image: the {curve.baseline} baseline image scores "
                     f"{curve.baseline_score:.2f} ({curve.score.replace('_', '-')}) against "
                     f"{curve.image_score:.2f} for the image itself: the image holds too little "
                     "more evidence for the target than that baseline to rank anything.")
    return Ranking(list(columns), rows, _best_cells(rows, columns, decimals), [], notes)
