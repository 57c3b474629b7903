"""Turning raw class-activation maps into displayable maps: ReLU, min-max, upsampling.

The sequence matches pytorch-grad-cam so that our maps can be compared with its maps:
``ReLU -> min-max (at feature resolution) -> bilinear upsample to the input size -> min-max``.
A map whose rectified values are constant (all zero, typically) carries no information: it
becomes all zeros with ``flat = True`` instead of NaN. Non-finite values are set to zero first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["FLAT_RTOL", "is_flat", "minmax", "normalize_cams", "upsample"]

FLAT_RTOL = 1e-6
"""A map is flat when ``max - min <= FLAT_RTOL * max`` after ReLU (all-zero maps included)."""


def is_flat(cams: torch.Tensor) -> torch.Tensor:
    """(B,) bool: True where a rectified map (B, h, w) is constant."""
    lo = cams.amin(dim=(-2, -1))
    hi = cams.amax(dim=(-2, -1))
    return (hi - lo) <= FLAT_RTOL * hi.abs()


def minmax(cams: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
    """Scale each map (B, h, w) to [0, 1]; flat maps (given or detected) become zeros."""
    if flat is None:
        flat = is_flat(cams)
    lo = cams.amin(dim=(-2, -1), keepdim=True)
    rng = cams.amax(dim=(-2, -1), keepdim=True) - lo
    f = flat[:, None, None]
    out = (cams - lo) / torch.where(f | (rng <= 0), torch.ones_like(rng), rng)
    return torch.where(f, torch.zeros_like(out), out)


def upsample(
    cams: torch.Tensor, size: tuple[int, int], align_corners: bool = False
) -> torch.Tensor:
    """Bilinear resize of maps (B, h, w) to ``size`` = (H, W) (OpenCV INTER_LINEAR geometry)."""
    if tuple(cams.shape[-2:]) == tuple(size):
        return cams
    return F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=align_corners)[:, 0]


def normalize_cams(raw: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps (B, h, w) -> (maps (B, H, W) float32 in [0, 1], flat (B,) bool)."""
    cams = torch.nan_to_num(raw.detach().float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    flat = is_flat(cams)
    cams = upsample(minmax(cams, flat), size)
    return minmax(cams, flat).clamp_(0.0, 1.0), flat
