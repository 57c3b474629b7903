"""Score-CAM (Wang et al. 2020): channel weights from the model's scores on masked inputs.

Own code rather than pytorch-grad-cam's ``ScoreCAM``: that one upsamples all K masks at once
(K x H x W floats), syncs to the host for every sample (``.item()``) and runs under ``no_grad``;
here masks are built per batch (memory bounded by ``batch_size``), scores stay on the device,
the passes run under ``inference_mode`` on the model's BatchNorm-folded channels-last copy
(:mod:`xai.folding`), channels whose activation map is constant (their mask is all zero, so
the masked input is all zero) share a single forward, and so do channels of one image with the
same min-max normalised map to 1e-6 (e.g. the same single active cell, or scaled copies). The
exact maps are the library's (same masks, same softmax weights).

For image ``x``, channel ``k``: ``M_k`` = A_k upsampled (bilinear, align_corners=True, as the
reference code) and min-max scaled (``+1e-8``); ``s_k`` = target logit of ``x * M_k``;
``w = softmax_k(s)``; ``cam = sum_k w_k A_k``. Fast mode runs masked passes for ``top_k``
channels only (see :class:`FastScoreCAM`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from xai.maps import normalize_cams
from xai.registry import PassContext, PassMethod, PassResult, register_method

__all__ = [
    "FastScoreCAM",
    "ScoreCAM",
    "default_batch_size",
    "fill_scores",
    "mask_coverage",
    "scorecam_raw",
    "select_channels",
]


def _masks(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) activation maps -> (N, H, W) masks in [0, 1] (library's normalisation)."""
    up = F.interpolate(acts[:, None], size=size, mode="bilinear", align_corners=True)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    return (up - lo) / (hi - lo + 1e-8)


def mask_coverage(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, K) mean of each channel's normalised mask (its coverage), without building the masks.

    Bilinear upsampling is linear, so the upsampled map's mean is ``w . A_k`` with ``w`` the mean
    interpolation weight of each low-resolution cell; min and max are taken at low resolution
    (exact when every cell centre lands on an output pixel, e.g. (H - 1) a multiple of (h - 1),
    within a few per cent otherwise): ``(w . A_k - min A_k) / (max A_k - min A_k + 1e-8)``.
    """
    h, w = acts.shape[-2:]
    basis = torch.eye(h * w, device=acts.device, dtype=acts.dtype).view(h * w, 1, h, w)
    weights = F.interpolate(basis, size=size, mode="bilinear", align_corners=True).mean(dim=(1, 2, 3))
    flat = acts.flatten(2)
    lo, hi = flat.amin(dim=2), flat.amax(dim=2)
    return (flat @ weights - lo) / (hi - lo + 1e-8)


def select_channels(
    acts: torch.Tensor, top_k: int, select: str, size: tuple[int, int]
) -> torch.Tensor:
    """(B, top_k) channel indices to score: by mean activation (``mean``), by mask coverage
    (``coverage``), or half of each (``mixed``: the top ``top_k // 2`` by mean activation, then
    the best-covering channels not yet chosen)."""
    mean = acts.mean(dim=(2, 3))
    if select == "mean":
        return mean.topk(top_k, dim=1).indices
    coverage = mask_coverage(acts, size)
    if select == "coverage":
        return coverage.topk(top_k, dim=1).indices
    if select != "mixed":
        raise ValueError("select must be 'mean', 'coverage' or 'mixed'")
    first = mean.topk(top_k // 2, dim=1).indices
    rest = coverage.scatter(1, first, float("-inf")).topk(top_k - first.shape[1], dim=1).indices
    return torch.cat([first, rest], dim=1)


def fill_scores(
    scores: torch.Tensor, channels: torch.Tensor, acts: torch.Tensor, fill: str,
    size: tuple[int, int],
) -> torch.Tensor:
    """(B, K) scores: measured ones in place, the others estimated.

    ``mean``: the mean measured score. ``fit``: a per-image least-squares line of score against
    mask coverage (:func:`mask_coverage`) through the measured channels, since the masked
    input's logit grows with how much of the image the mask keeps."""
    b, k = acts.shape[:2]
    if fill == "mean":
        full = scores.mean(dim=1, keepdim=True).expand(b, k).clone()
    elif fill == "fit":
        coverage = mask_coverage(acts, size)
        design = torch.stack([coverage.gather(1, channels), torch.ones_like(scores)], dim=2)
        coef = torch.linalg.lstsq(design.double().cpu(), scores.double().cpu()[:, :, None])
        coef = coef.solution[:, :, 0].to(scores)
        full = coverage * coef[:, :1] + coef[:, 1:]
    else:
        raise ValueError("fill must be 'none', 'mean' or 'fit'")
    return full.scatter(1, channels, scores)


def default_batch_size(device: torch.device) -> int:
    """Masked inputs per forward: 8 on a CPU (fastest per image there: ResNet-50 at 224 px ran
    25 ms/image at 8, 33 ms at 16 and 35 ms at 32, the larger batches falling out of cache), 64 on
    a GPU."""
    return 8 if device.type == "cpu" else 64


def _distinct(maps: torch.Tensor, image_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group maps (N, h, w) of the same image whose min-max normalised values agree to 1e-6
    (same mask to that precision): returns (index of each group's first map, group of each map).
    """
    flat = maps.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    norm = (flat - lo) / (hi - lo + 1e-8)
    keys = torch.cat([image_of[:, None].double(), torch.round(norm.double() * 1e6)], dim=1)
    uniq, inverse = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), maps.shape[0], dtype=torch.long, device=maps.device)
    order = torch.arange(maps.shape[0], device=maps.device)
    return first.scatter_reduce(0, inverse, order, "amin"), inverse


def scorecam_raw(
    ctx: PassContext, top_k: int | None = None, batch_size: int | None = None,
    select: str = "mean", fill: str = "none",
) -> torch.Tensor:
    """Raw Score-CAM maps (B, h, w) for the batch of ``ctx``: all channels unless ``top_k``.

    With ``top_k``, channels are chosen by :func:`select_channels`; ``fill="none"`` runs the
    softmax and the sum over the scored channels only, otherwise every channel enters them with
    a score from :func:`fill_scores`.
    """
    x, size = ctx.x.detach(), (int(ctx.x.shape[-2]), int(ctx.x.shape[-1]))
    a = ctx.activations[ctx.target_layer].detach().float()
    b, k = a.shape[:2]
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    batch_size = batch_size or default_batch_size(x.device)
    if top_k is not None and top_k < k:
        channels = select_channels(a, top_k, select, size)
    else:
        channels = torch.arange(k, device=a.device).expand(b, k)
    sel = torch.gather(a, 1, channels[:, :, None, None].expand(-1, -1, *a.shape[2:]))
    kk = sel.shape[1]
    flat_sel = sel.flatten(0, 1)  # (B * k', h, w)
    constant = flat_sel.flatten(1).amax(1) == flat_sel.flatten(1).amin(1)
    image_of = torch.arange(b, device=a.device).repeat_interleave(kk)
    todo = (~constant).nonzero()[:, 0]
    first, inverse = _distinct(flat_sel[todo], image_of[todo])
    reps = todo[first]
    rep_scores = torch.empty(reps.numel(), device=a.device)
    for start in range(0, reps.numel(), batch_size):
        idx = reps[start:start + batch_size]
        batch = x[image_of[idx]] * _masks(flat_sel[idx], size)[:, None]
        rep_scores[start:start + batch_size] = ctx.score(ctx.infer(batch).float(),
                                                         ctx.targets[image_of[idx]])
    scores = torch.empty(b * kk, device=a.device)
    scores[todo] = rep_scores[inverse]
    if bool(constant.any()):  # zero mask -> zero input: one forward serves every such channel
        zero_logits = ctx.infer(torch.zeros_like(x[:1])).float()
        const_idx = constant.nonzero()[:, 0]
        targets = ctx.targets[image_of[const_idx]]
        scores[const_idx] = ctx.score(zero_logits.expand(const_idx.numel(), -1), targets)
    scores = scores.view(b, kk)
    if fill != "none" and kk < k:
        full = fill_scores(scores, channels, a, fill, size)
        return torch.einsum("bk,bkhw->bhw", torch.softmax(full, dim=1), a)
    return torch.einsum("bk,bkhw->bhw", torch.softmax(scores, dim=1), sel)


@register_method("scorecam", "Score-CAM")
class ScoreCAM(PassMethod):
    """Exact Score-CAM: one masked forward per channel (K of them), ``batch_size`` at a time."""

    needs_grad: ClassVar[bool] = False
    expensive: ClassVar[bool] = True

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = batch_size

    def run(self, ctx: PassContext) -> PassResult:
        raw = scorecam_raw(ctx, None, self.batch_size)
        maps, flat = normalize_cams(raw, tuple(ctx.x.shape[-2:]))
        return PassResult(maps, flat, ctx.target_layer)


@register_method("scorecam_fast", "Score-CAM (fast)")
class FastScoreCAM(PassMethod):
    """Fast Score-CAM: masked passes for ``top_k`` channels only (default 16 of e.g. 2,048).

    ``select``: which channels get a pass -- ``"mean"`` (largest mean activation), ``"coverage"``
    (largest normalised-mask area) or ``"mixed"`` (default: half each). ``fill``: ``"fit"``
    (default: the other channels get the score a least-squares line of score vs. mask coverage
    predicts, so the map still sums all K channels), ``"mean"`` (the mean measured score) or
    ``"none"`` (softmax and sum over the scored channels only). Defaults chosen on measured
    rank agreement with exact Score-CAM (``bench/xai_speed.py``: random-init ResNet-50 and
    EfficientNet-Lite0, where plain top-k by mean activation reached only 0.81-0.89).
    """

    needs_grad: ClassVar[bool] = False
    variant_of: ClassVar[str | None] = "scorecam"

    def __init__(self, top_k: int = 16, select: str = "mixed", fill: str = "fit",
                 batch_size: int | None = None) -> None:
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        if select not in ("mean", "coverage", "mixed"):
            raise ValueError("select must be 'mean', 'coverage' or 'mixed'")
        if fill not in ("none", "mean", "fit"):
            raise ValueError("fill must be 'none', 'mean' or 'fit'")
        self.top_k, self.select, self.fill = top_k, select, fill
        self.batch_size = batch_size

    def run(self, ctx: PassContext) -> PassResult:
        raw = scorecam_raw(ctx, self.top_k, self.batch_size, self.select, self.fill)
        maps, flat = normalize_cams(raw, tuple(ctx.x.shape[-2:]))
        top_k = torch.full((raw.shape[0],), self.top_k)
        return PassResult(maps, flat, ctx.target_layer, {"top_k": top_k})
