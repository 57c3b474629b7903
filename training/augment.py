"""Tensor augmentation of cached uint8 batches, and the normalisation inference uses.

Augmentation works on whole batches (one ``grid_sample`` call, no per-image Python loop) and
draws its parameters per image from torch's global generator (seeded per epoch by
the training loop, so runs and resumed runs repeat exactly). Normalisation is the same as
:func:`models.predict.to_input`: ``/255``, then ``(x - mean) / std``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import TrivialAugmentWide
from torchvision.transforms.v2.functional import adjust_sharpness, gaussian_blur

from imaging.preprocess import kept_region
from training.recipes import Recipe

__all__ = ["Augment", "jpeg_roundtrip", "normalise", "sharpen"]


def normalise(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(N, 3, S, S)`` uint8 -> float, scaled to [0, 1] then standardised per channel."""
    x = batch.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def sharpen(batch: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_sharpness`` with one factor per image of a float [0, 1] batch:
    each image blended with its 3 x 3-smoothed copy (borders kept), clipped to [0, 1]."""
    smooth = adjust_sharpness(batch, 0.0)
    return (smooth + factors.view(-1, 1, 1, 1) * (batch - smooth)).clamp_(0, 1)


def jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """A uint8 ``(3, H, W)`` image encoded as JPEG at ``quality`` by Pillow and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer).convert("RGB"))
    return torch.from_numpy(decoded.copy()).permute(2, 0, 1)


class Augment(nn.Module):
    """The recipe's augmentation on a uint8 batch, returning the normalised float batch.

    TrivialAugment and JPEG re-encoding (when asked) first, per image on uint8; then rotation, shift, flips and the
    random resized crop as one random affine map per image, applied to the whole batch in a
    single ``grid_sample`` (bilinear, zero fill); then brightness/contrast
    ``g = alpha * f + beta``, gamma and blur, clipped to the valid range. Last, a masking
    preprocessing's fixed region (:func:`imaging.preprocess.kept_region`) is blacked out again,
    so a shifted, flipped or brightened image is masked exactly as inference masks a view.
    :meth:`with_regions` moves region masks (float, ``(N, S, S)``) with their images.
    """

    def __init__(self, recipe: Recipe, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.rotation = math.radians(recipe.rotation)
        self.shift = recipe.shift
        self.hflip, self.vflip = recipe.hflip, recipe.vflip
        self.crop_scale = recipe.crop_scale
        self.alpha, self.beta = recipe.brightness_alpha, recipe.brightness_beta
        self.gamma, self.blur = recipe.gamma_jitter, recipe.blur
        self.sharpen, self.jpeg = recipe.sharpen, recipe.jpeg
        self.trivial = TrivialAugmentWide() if recipe.auto_augment == "trivial" else None
        self.mean, self.std = tuple(mean), tuple(std)
        self.preprocessing = recipe.preprocessing

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Augment each image with its own random parameters, then normalise."""
        return self.with_regions(batch, None)[0]

    def with_regions(self, batch: torch.Tensor, regions: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward`, and ``regions`` moved by each image's own geometric map (flip, crop,
        rotation, shift), untouched by the colour changes."""
        if regions is not None and self.trivial is not None:
            raise ValueError("TrivialAugment shears and shifts pixels that region masks cannot "
                             "follow: drop --auto-augment or the region masks")
        if self.trivial is not None:
            batch = torch.stack([self.trivial(image) for image in batch])
        if self.jpeg:
            qualities = torch.randint(self.jpeg, 96, (len(batch),)).tolist()
            batch = torch.stack([jpeg_roundtrip(image, q) for image, q in zip(batch, qualities, strict=True)])
        x = batch.float().div_(255.0)
        n = x.shape[0]
        if self.rotation or self.shift or self.hflip or self.vflip or self.crop_scale < 1:
            grid = self._grid(x)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if regions is not None:
                regions = F.grid_sample(regions.float().unsqueeze(1), grid, mode="bilinear",
                                        padding_mode="zeros", align_corners=False).squeeze(1)
        if self.alpha or self.beta:
            alpha = 1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * self.alpha
            beta = (torch.rand(n, 1, 1, 1) * 2 - 1) * self.beta
            x = x * alpha + beta
        x = x.clamp_(0, 1)
        if self.gamma:
            x = x.pow_(((torch.rand(n, 1, 1, 1) * 2 - 1) * self.gamma).exp())
        if self.blur:
            for i in torch.nonzero(torch.rand(n) < self.blur).flatten().tolist():
                sigma = float(torch.empty(1).uniform_(0.1, 1.5))
                x[i] = gaussian_blur(x[i], [5, 5], [sigma, sigma])
        if self.sharpen:
            x = sharpen(x, (torch.rand(n) * 2 - 1).mul_(math.log(self.sharpen)).exp_())
        keep = kept_region(self.preprocessing, x.shape[-1])
        if keep is not None:
            x = x * torch.tensor(keep, dtype=x.dtype)
        return normalise(x.mul_(255.0), self.mean, self.std), regions

    def _grid(self, x: torch.Tensor) -> torch.Tensor:
        """Sampling grid of one affine map per image: flip, crop zoom, rotation, shift."""
        n = x.shape[0]
        angle = (torch.rand(n) * 2 - 1) * self.rotation
        shift = (torch.rand(n, 2) * 2 - 1) * (2 * self.shift)  # grid units span 2 per side
        flip_x = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if self.hflip else torch.ones(n)
        flip_y = torch.where(torch.rand(n) < 0.5, -1.0, 1.0) if self.vflip else torch.ones(n)
        zoom = torch.ones(n, 2)
        if self.crop_scale < 1:  # area in [crop_scale, 1], aspect in [3/4, 4/3], anywhere inside
            area = torch.empty(n).uniform_(self.crop_scale, 1.0)
            aspect = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3)).exp()
            zoom = torch.stack([(area * aspect).sqrt(), (area / aspect).sqrt()], 1).clamp_(max=1.0)
            shift = shift + (torch.rand(n, 2) * 2 - 1) * (1 - zoom)
        cos, sin = angle.cos(), angle.sin()
        sx, sy = zoom[:, 0] * flip_x, zoom[:, 1] * flip_y
        theta = torch.stack([torch.stack([cos * sx, -sin * sy, shift[:, 0]], 1),
                             torch.stack([sin * sx, cos * sy, shift[:, 1]], 1)], 1)
        return F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
