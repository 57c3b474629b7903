"""Scoring heat maps: localisation against a mask or box, and faithfulness without masks.

* Map -> region: Otsu, a fraction of the maximum, or the top-k% pixels; optionally the largest
  connected component; its bounding box (as scored by Ornek & Ceylan 2024 and Liu et al. 2024/25).
* Localisation: IoU = |P n G| / |P u G|, Dice = 2 |P n G| / (|P| + |G|), pointing game (is the
  map's maximum inside G, optionally within a tolerance), energy-based pointing game (share of
  the map's mass inside G). Ground truth is a bool/0-255 mask or a box ``(x0, y0, x1, y1)``
  with exclusive ends. Two empty regions score IoU = Dice = 1.
* Faithfulness: deletion and insertion curves (RISE, Petsiuk et al. 2018; our code: batched) on
  the target's log-odds from a mean-colour baseline, rescaled per image so the baseline scores 0
  and the image 1 (see :func:`perturbation_curve` for why), and ROAD (pytorch-grad-cam's
  ``pytorch_grad_cam.metrics.road``, reused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

from xai.folding import inference_forward
from xai.targets import probabilities

__all__ = [
    "BASELINES",
    "CURVE_KINDS",
    "CURVE_SCORES",
    "MIN_SPAN",
    "Box",
    "LocalizationScores",
    "PerturbationCurve",
    "as_mask",
    "baseline_image",
    "box_to_mask",
    "dice",
    "energy_pointing_game",
    "iou",
    "largest_component",
    "localization_scores",
    "map_to_mask",
    "mask_to_box",
    "perturbation_curve",
    "pointing_game",
    "road_scores",
    "target_log_odds",
]

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, ``x1``/``y1`` exclusive."""


def map_to_mask(
    cam: np.ndarray,
    method: str = "otsu",
    *,
    fraction: float = 0.5,
    top_percent: float = 20.0,
    largest: bool = False,
) -> np.ndarray:
    """Bool region of a map: ``otsu`` (8-bit Otsu), ``fraction`` (>= fraction * max) or
    ``topk`` (the ``top_percent`` % highest pixels); ``largest`` keeps the largest component.
    A map with no positive value gives an empty region."""
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32))
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0:
        return np.zeros(cam.shape, dtype=bool)
    if method == "otsu":
        img = np.clip(np.rint(cam / peak * 255), 0, 255).astype(np.uint8)
        _, binary = cv2.threshold(img, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        mask = binary.astype(bool)
    elif method == "fraction":
        if not 0.0 < fraction <= 1.0:
            raise ValueError("fraction must be in (0, 1]")
        mask = cam >= fraction * peak
    elif method == "topk":
        if not 0.0 < top_percent <= 100.0:
            raise ValueError("top_percent must be in (0, 100]")
        mask = cam >= np.percentile(cam, 100.0 - top_percent)
        mask &= cam > 0
    else:
        raise ValueError(f"unknown threshold method {method!r}; use otsu, fraction or topk")
    return largest_component(mask) if largest else mask


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a bool mask (empty stays empty)."""
    mask = np.asarray(mask, dtype=bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask.copy()
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == best


def mask_to_box(mask: np.ndarray) -> Box | None:
    """Bounding box of a bool mask, or None when empty."""
    ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_to_mask(box: Box | None, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask of ``shape`` (H, W) that is True inside ``box`` (clipped to the image)."""
    mask = np.zeros(shape, dtype=bool)
    if box is not None:
        x0, y0, x1, y1 = (int(v) for v in box)
        mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return mask


def as_mask(region: np.ndarray | Sequence[int] | None, shape: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) mask from a mask (bool or 0/255) or a box; shapes must match."""
    if region is None:
        return np.zeros(shape, dtype=bool)
    if not isinstance(region, np.ndarray):
        values = list(region)
        if len(values) != 4:
            raise ValueError("a box is (x0, y0, x1, y1)")
        return box_to_mask(tuple(values), shape)  # type: ignore[arg-type]
    mask = region
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} does not match map shape {tuple(shape)}")
    return mask > (0 if mask.dtype == bool or mask.max() <= 1 else 127)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """|P n G| / |P u G| of two bool masks (1.0 when both are empty)."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    union = int(np.logical_or(p, g).sum())
    return 1.0 if union == 0 else int(np.logical_and(p, g).sum()) / union


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """2 |P n G| / (|P| + |G|) of two bool masks (1.0 when both are empty)."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    total = int(p.sum()) + int(g.sum())
    return 1.0 if total == 0 else 2 * int(np.logical_and(p, g).sum()) / total


def pointing_game(cam: np.ndarray, gt: np.ndarray | Sequence[int], tolerance: int = 0) -> bool:
    """True when the map's maximum lies in the ground truth (dilated by ``tolerance`` px).

    A map without a positive value (flat) never hits.
    """
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32))
    g = as_mask(gt, cam.shape)
    if cam.size == 0 or float(cam.max()) <= 0:
        return False
    if tolerance > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
        g = cv2.dilate(g.astype(np.uint8), k).astype(bool)
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return bool(g[y, x])


def energy_pointing_game(cam: np.ndarray, gt: np.ndarray | Sequence[int]) -> float:
    """Share of the map's mass inside the ground truth: sum(cam * G) / sum(cam) (0 if no mass)."""
    cam = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float64)), 0, None)
    g = as_mask(gt, cam.shape)
    total = float(cam.sum())
    return 0.0 if total <= 0 else float(cam[g].sum()) / total


@dataclass(frozen=True)
class LocalizationScores:
    """IoU, Dice, pointing game hit and energy share of one map against one ground truth."""

    iou: float
    dice: float
    pointing: float
    energy: float

    def as_dict(self) -> dict[str, float]:
        """Plain dict (for JSON)."""
        return asdict(self)


def localization_scores(
    cam: np.ndarray,
    gt: np.ndarray | Sequence[int],
    *,
    threshold: str = "otsu",
    fraction: float = 0.5,
    top_percent: float = 20.0,
    region: str = "box",
    largest: bool = True,
    tolerance: int = 0,
) -> LocalizationScores:
    """Score a map in [0, 1] against a mask or box of the same size.

    The predicted region is the thresholded map (``threshold``: otsu / fraction / topk), its
    largest component when ``largest``, and with ``region="box"`` its bounding box (as in the
    HayCAM+ and DT Grad-CAM studies); IoU and Dice compare it with the ground-truth mask.
    """
    cam = np.asarray(cam, dtype=np.float32)
    g = as_mask(gt, cam.shape)
    pred = map_to_mask(cam, threshold, fraction=fraction, top_percent=top_percent, largest=largest)
    if region == "box":
        pred = box_to_mask(mask_to_box(pred), cam.shape)
    elif region != "mask":
        raise ValueError("region must be 'box' or 'mask'")
    return LocalizationScores(iou(pred, g), dice(pred, g), float(pointing_game(cam, g, tolerance)),
                              energy_pointing_game(cam, g))


CURVE_KINDS = ("deletion", "insertion")
CURVE_SCORES = ("log_odds", "probability")
BASELINES = ("mean", "blur")
MIN_SPAN = {"log_odds": 1.0, "probability": 0.1}
"""Smallest score difference between the original and the baseline image for a curve to mean
anything: a factor e (2.7x) in the odds, or 0.1 in probability."""


def target_log_odds(logits: torch.Tensor, target: int) -> torch.Tensor:
    """(B,) log-odds of the target class: ``log p_t - log(1 - p_t) = z_t - logsumexp_{j != t} z_j``
    (``+-z`` for a single-logit head). Unlike the probability it does not saturate near 1, and
    a softmax temperature only scales it."""
    z = logits.detach().float()
    if z.shape[1] == 1:
        return z[:, 0] if target == 1 else -z[:, 0]
    others = torch.cat([z[:, :target], z[:, target + 1:]], dim=1)
    return z[:, target] - torch.logsumexp(others, dim=1)


def _target_score(model: nn.Module, batch: torch.Tensor, target: int, score: str) -> torch.Tensor:
    logits = inference_forward(model, batch)
    if score == "log_odds":
        return target_log_odds(logits, target)
    return probabilities(logits)[:, target]


@dataclass(frozen=True)
class PerturbationCurve:
    """A deletion or insertion curve of one map (Petsiuk et al. 2018, RISE), made comparable.

    ``scores``: the target's ``score`` (``log_odds`` or ``probability``) with 0, 1/steps, ..., all
    pixels changed, most relevant first. ``curve``: the same, rescaled so that the baseline
    image scores 0 and the original image 1: deletion falls from 1 to 0, insertion rises from 0
    to 1, whatever the model's confidence (an affine map per image, so it ranks methods exactly
    as the raw AUC does); it may leave [0, 1] where a part of the image scores beyond the whole.
    ``auc``: area under ``curve`` (deletion: lower is better, insertion: higher), NaN when the
    curve is not ``informative``: the original image does not score at least ``MIN_SPAN`` above
    the baseline image, so the image holds no evidence for the target that a pixel order could
    find (where the baseline scores higher, the rescaled curve would even turn upside down).
    """

    kind: str
    score: str
    baseline: str
    scores: np.ndarray
    curve: np.ndarray
    auc: float
    informative: bool

    @property
    def image_score(self) -> float:
        """Score of the original image."""
        return float(self.scores[0] if self.kind == "deletion" else self.scores[-1])

    @property
    def baseline_score(self) -> float:
        """Score of the baseline image (every pixel replaced)."""
        return float(self.scores[-1] if self.kind == "deletion" else self.scores[0])

    @property
    def raw_auc(self) -> float:
        """RISE's own figure: the area under ``scores`` (not comparable across images)."""
        return float(np.trapezoid(self.scores, dx=1.0 / (len(self.scores) - 1)))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    img = x.detach().float().cpu().numpy().transpose(1, 2, 0)
    out = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    if out.ndim == 2:
        out = out[:, :, None]
    return torch.from_numpy(out.transpose(2, 0, 1).copy()).to(x.device, x.dtype)


def baseline_image(x: torch.Tensor, baseline: str = "mean", sigma: float = 5.0) -> torch.Tensor:
    """The image with no information left, (C, H, W): ``mean`` is zero in the model's normalised
    input units (the normalisation's mean colour: mid grey for EfficientNet-Lite); ``blur`` a
    Gaussian blur of ``sigma`` px (RISE's insertion start; it keeps colour, so a class told by
    colour, such as bleeding, survives it)."""
    if baseline == "mean":
        return torch.zeros_like(x)
    if baseline == "blur":
        return _blur(x, sigma)
    raise ValueError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}")


def perturbation_curve(
    model: nn.Module, x: torch.Tensor, cam: np.ndarray, target: int, kind: str, *,
    baseline: str = "mean", score: str = "log_odds", steps: int = 50, batch_size: int = 16,
) -> PerturbationCurve:
    """Deletion (pixels of ``x`` replaced by the ``baseline`` image, most relevant first) or
    insertion (pixels of ``x`` put into the baseline image, most relevant first) of one map,
    scored by the target's ``log_odds`` (default) or ``probability`` at ``steps + 1`` fractions.

    Why not RISE's probability from a blurred start: on the capsule model the blurred frame is
    still "bleeding" at 0.89-0.99 and the two-class softmax saturates, so every insertion curve
    sat near 1 and every method, a map pointing away from the lesion included, scored ~1.
    """
    if kind not in CURVE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CURVE_KINDS)}")
    if score not in CURVE_SCORES:
        raise ValueError(f"score must be one of {', '.join(CURVE_SCORES)}")
    x0 = x[0] if x.dim() == 4 else x
    h, w = x0.shape[-2:]
    cam_t = torch.as_tensor(np.asarray(cam, dtype=np.float32))
    if tuple(cam_t.shape) != (h, w):
        raise ValueError(f"map shape {tuple(cam_t.shape)} does not match input {(h, w)}")
    base = baseline_image(x0, baseline)
    start, end = (x0, base) if kind == "deletion" else (base, x0)
    order = torch.argsort(cam_t.flatten(), descending=True, stable=True).to(x0.device)
    counts = [round(i * h * w / steps) for i in range(steps + 1)]
    rank = torch.empty(h * w, dtype=torch.long, device=x0.device)
    rank[order] = torch.arange(h * w, device=x0.device)
    chunks = []
    for i in range(0, len(counts), batch_size):
        chunk = torch.tensor(counts[i:i + batch_size], device=x0.device)
        changed = (rank[None, :] < chunk[:, None]).view(-1, 1, h, w)
        chunks.append(_target_score(model, torch.where(changed, end[None], start[None]),
                                    target, score))
    scores = torch.cat(chunks).float().cpu().numpy()
    image, empty = (scores[0], scores[-1]) if kind == "deletion" else (scores[-1], scores[0])
    informative = bool(image - empty >= MIN_SPAN[score])
    curve = (scores - empty) / (image - empty) if image != empty else np.full_like(scores, np.nan)
    auc = float(np.trapezoid(curve, dx=1.0 / steps)) if informative else float("nan")
    return PerturbationCurve(kind, score, baseline, scores, curve.astype(np.float32), auc,
                             informative)


class _ProbTarget:
    """pytorch-grad-cam target: probability of one class (sigmoid pair for one logit)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return probabilities(output.reshape(1, -1))[0, self.index]


def road_scores(
    model: nn.Module, x: torch.Tensor, cam: np.ndarray, target: int,
    percentiles: Sequence[int] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
) -> dict[str, float]:
    """ROAD (Rong et al. 2022) via pytorch-grad-cam: change of the target probability after
    noisy-linear imputation of the most relevant (``morf``, more negative is better) and least
    relevant (``lerf``, closer to 0 is better) pixels, averaged over ``percentiles``;
    ``combined`` = (lerf - morf) / 2 (higher is better)."""
    from pytorch_grad_cam.metrics.road import (
        ROADLeastRelevantFirstAverage,
        ROADMostRelevantFirstAverage,
    )

    def forward(t: torch.Tensor) -> torch.Tensor:
        return inference_forward(model, t)

    xb = (x if x.dim() == 4 else x[None]).detach()
    cams = np.asarray(cam, dtype=np.float32)[None]
    targets = [_ProbTarget(target)]
    morf = float(ROADMostRelevantFirstAverage(list(percentiles))(xb, cams, targets, forward)[0])
    lerf = float(ROADLeastRelevantFirstAverage(list(percentiles))(xb, cams, targets, forward)[0])
    return {"morf": morf, "lerf": lerf, "combined": (lerf - morf) / 2}
