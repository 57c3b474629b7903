"""DT Grad-CAM ("dynamic threshold" Grad-CAM, Liu et al., IEEE Access 2024/25).

Own code: no library implements it, and its N noisy copies are batched into ONE forward and ONE
gradient pass here (a naive version calls Grad-CAM N times). Otsu and morphology use OpenCV.

1. ``x_i = x + sigma * range(x) * eps_i``, ``eps_i ~ N(0, 1)``, i = 1..N (seeded generator);
   our addition: when fewer than ``min_kept`` of the copies keep the model's decision on ``x``,
   sigma is halved as few times as needed (at most ``max_halvings``, found by a binary search
   with logits-only probes) and the copies drawn again;
2. ``M_i`` = Grad-CAM of ``x_i`` for the same target (ReLU + min-max per copy);
3. ``M = sum_i w_i M_i / sum_i w_i`` with ``w_i`` decreasing linearly from 1 to 0.5;
4. ``M`` upsampled to the input size and min-max normalised; Otsu threshold ``t`` on ``M``
   (8-bit, OpenCV);
5. mask = ``M > t``, then morphological opening and closing with an elliptical kernel;
   output = ``M`` inside the mask, 0 outside (the mask is returned too).

Why the noise adapts: the shipped models are fragile to pixel noise. At sigma = 0.1 only 3% of
the noisy copies of capsule bleeding frames are still called "bleeding" (x-ray "normal": 0%), so
the copies' Grad-CAM for the target is all negative, the ReLU leaves nothing, and the averaged
map came out flat or made of noise. ``info`` reports the ``sigma`` used and the share of copies
that ``kept`` the decision, so a caller can say so when even the smallest noise flips it.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from xai.maps import is_flat, minmax, upsample
from xai.methods import GradCAM
from xai.registry import PassContext, PassMethod, PassResult, register_method
from xai.targets import predicted

__all__ = ["DTGradCAM", "linear_weights", "otsu_morph_mask"]


def linear_weights(n: int, start: float = 1.0, end: float = 0.5) -> torch.Tensor:
    """Copy weights decreasing linearly from ``start`` to ``end`` (a single copy gets ``start``)."""
    if n == 1:
        return torch.tensor([start])
    return torch.linspace(start, end, n)


def otsu_morph_mask(cam: np.ndarray, kernel_size: int = 3) -> tuple[np.ndarray, float]:
    """Otsu-binarise a map in [0, 1] (H, W), then open and close; returns (bool mask, threshold)."""
    img = np.clip(np.rint(cam * 255.0), 0, 255).astype(np.uint8)
    t, binary = cv2.threshold(img, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if kernel_size > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    return binary.astype(bool), float(t) / 255.0


@register_method("dt_gradcam", "DT Grad-CAM")
class DTGradCAM(PassMethod):
    """DT Grad-CAM: Grad-CAM averaged over ``n`` noisy copies, kept inside its Otsu region.

    Parameters: ``n`` copies (8), ``sigma`` noise as a fraction of each image's value range
    (0.1), ``kernel_size`` of the elliptical morphology kernel (3), ``seed`` of the noise (0, so
    the same image always gives the same map), ``weights`` from 1 down to 0.5, ``min_kept``
    share of copies that must keep the decision (0.5; 0 turns the adaptation off) and
    ``max_halvings`` of sigma (4, down to sigma / 16). ``info``: ``threshold`` (Otsu),
    ``sigma`` used, its ``halvings`` and ``kept`` (share of copies with the clean image's
    decision).
    """

    def __init__(self, n: int = 8, sigma: float = 0.1, kernel_size: int = 3, seed: int = 0,
                 weight_range: tuple[float, float] = (1.0, 0.5), min_kept: float = 0.5,
                 max_halvings: int = 4) -> None:
        if n < 1:
            raise ValueError("n must be >= 1")
        if not 0.0 <= min_kept <= 1.0 or max_halvings < 0:
            raise ValueError("min_kept must be in [0, 1] and max_halvings >= 0")
        self.n, self.sigma, self.kernel_size, self.seed = n, sigma, kernel_size, seed
        self.weight_range = weight_range
        self.min_kept, self.max_halvings = min_kept, max_halvings

    def noisy_copies(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
                     ) -> torch.Tensor:
        """(B * n, C, H, W): the ``n`` noisy copies of each image, copies of one image adjacent.

        ``sigma``: one value or one per image (default: the method's). Every image gets the same
        ``n`` noise draws (seeded), so an image's map does not depend on the other images of
        the batch."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        eps = torch.randn((1, self.n, *x.shape[1:]), generator=gen).to(x.device, x.dtype)
        value_range = (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1, 1)
        scale = torch.as_tensor(self.sigma if sigma is None else sigma, dtype=x.dtype,
                                device=x.device).reshape(-1, 1, 1, 1, 1)
        return (x[:, None] + scale * value_range * eps).flatten(0, 1)

    def run(self, ctx: PassContext) -> PassResult:
        b, size, layer = ctx.x.shape[0], tuple(ctx.x.shape[-2:]), ctx.target_layer
        decision = predicted(ctx.clean_logits().detach())

        def kept_share(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
            same = predicted(logits.detach()).view(-1, self.n) == decision[images, None]
            return same.float().mean(dim=1)

        everyone = torch.arange(b, device=ctx.x.device)
        level = torch.zeros(b, dtype=torch.long, device=ctx.x.device)  # halvings of sigma
        captured = ctx.capture(self.noisy_copies(ctx.x, self.sigma), [layer], True)
        kept = kept_share(captured.logits, everyone)
        lost = kept < self.min_kept
        if bool(lost.any()) and self.max_halvings > 0:
            # Binary search, per image, for the fewest halvings that keep the decision (more
            # noise, fewer copies keep it), with logits-only probes; then ONE more capture.
            lo = torch.where(lost, 1, 0)
            hi = torch.where(lost, self.max_halvings, 0)
            while bool((lo < hi).any()):
                open_ = (lo < hi).nonzero()[:, 0]
                mid = (lo[open_] + hi[open_]) // 2
                probe = ctx.infer(self.noisy_copies(ctx.x[open_], self.sigma / 2.0 ** mid))
                keeps = kept_share(probe, open_) >= self.min_kept
                hi[open_] = torch.where(keeps, mid, hi[open_])
                lo[open_] = torch.where(keeps, lo[open_], mid + 1)
            level = lo
            captured = ctx.capture(self.noisy_copies(ctx.x, self.sigma / 2.0 ** level), [layer],
                                   True)
            kept = kept_share(captured.logits, everyone)
        # float64: the sigma reported is the configured one exactly (float32 0.1 > 0.1)
        sigma, halvings = self.sigma / 2.0 ** level.double(), level.float()
        targets = ctx.targets.repeat_interleave(self.n)
        score = ctx.score(captured.logits, targets).sum()
        a = captured.activations[layer]
        (g,) = torch.autograd.grad(score, [a])
        raw = GradCAM().cam(a.detach(), g).clamp_min(0)
        raw = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        per_copy = minmax(raw).view(b, self.n, *raw.shape[1:])
        w = linear_weights(self.n, *self.weight_range).to(per_copy)
        mean = (per_copy * w.view(1, -1, 1, 1)).sum(dim=1) / w.sum()
        flat = is_flat(mean)
        mean = minmax(upsample(minmax(mean, flat), size), flat).clamp_(0.0, 1.0)
        maps, masks, thresholds = [], [], []
        for i in range(b):
            if bool(flat[i]):
                mask, t = np.zeros(size, dtype=bool), 0.0
            else:
                mask, t = otsu_morph_mask(mean[i].cpu().numpy(), self.kernel_size)
            m = torch.from_numpy(mask).to(mean.device)
            maps.append(torch.where(m, mean[i], torch.zeros_like(mean[i])))
            masks.append(m)
            thresholds.append(t)
        out = torch.stack(maps)
        flat = flat | (out.amax(dim=(1, 2)) <= 0)
        info = {"threshold": torch.tensor(thresholds), "sigma": sigma.cpu(), "kept": kept.cpu(),
                "halvings": halvings.cpu()}
        return PassResult(out, flat, layer, info, torch.stack(masks))
