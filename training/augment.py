"""Tensor augmentation of cached uint8 batches, and the normalisation inference uses.

Augmentation works on whole batches (one ``grid_sample`` call, no per-image Python loop) and
draws its parameters per image from torch's global generator (seeded per epoch by
the training loop, so runs and resumed runs repeat exactly). Normalisation is the same as
:func:`models.predict.to_input`: ``/255``, then ``(x - mean) / std``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from training.recipes import Recipe

__all__ = ["Augment", "normalise"]


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(N, 3, S, S)`` uint8 -> float, scaled to [0, 1] then standardised per channel."""
    x = batch.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class Augment(nn.Module):
    """The recipe's augmentation on a uint8 batch, returning the normalised float batch.

    Rotation, shift and flips are one random affine map per image, applied to the whole batch
    in a single ``grid_sample`` (bilinear, zero fill); then brightness/contrast
    ``g = alpha * f + beta``, clipped to the valid range.
    """

    def __init__(self, recipe: Recipe, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.rotation = math.radians(recipe.rotation)
        self.shift = recipe.shift
        self.hflip, self.vflip = recipe.hflip, recipe.vflip
        self.alpha, self.beta = recipe.brightness_alpha, recipe.brightness_beta
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Augment each image with its own random parameters, then normalise."""
        x = batch.float().div_(255.0)
        n = x.shape[0]
        if self.rotation or self.shift or self.hflip or self.vflip:
            angle = (torch.rand(n) * 2 - 1) * self.rotation
            shift = (torch.rand(n, 2) * 2 - 1) * (2 * self.shift)  # grid units span 2 per side
            flip_x = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(n)
            flip_y = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if self.vflip else torch.ones(n)
            cos, sin = angle.cos(), angle.sin()
            theta = torch.stack([torch.stack([cos * flip_x, -sin * flip_y, shift[:, 0]], 1),
                                 torch.stack([sin * flip_x, cos * flip_y, shift[:, 1]], 1)], 1)
            grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.alpha or self.beta:
            alpha = 1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * self.alpha
            beta = (torch.rand(n, 1, 1, 1) * 2 - 1) * self.beta
            x = x * alpha + beta
        return normalise(x.clamp_(0, 1).mul_(255.0), self.mean, self.std)
