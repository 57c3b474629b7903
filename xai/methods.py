"""Single-pass CAM methods: each a short pure function of activations A and gradients G.

Notation: ``A`` activations (B, K, h, w) of the layer, ``G = dY/dA`` with ``Y`` the raw target
logit, sums over ``ij`` run over spatial positions, ``Z = h * w``. Every formula reproduces
pytorch-grad-cam's implementation (same epsilons), so maps agree after the same ReLU and
min-max -- except Eigen-CAM's sign, which we fix (see :class:`EigenCAM`). HayCAM+ is our own
code: no library implements it.
"""

from __future__ import annotations

import torch

from xai.registry import CamMethod, register_method

__all__ = [
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HayCAMPlus",
    "HiResCAM",
    "LayerCAM",
    "XGradCAM",
    "principal_projections",
]

_SPATIAL = (2, 3)


def _grad(g: torch.Tensor | None) -> torch.Tensor:
    if g is None:
        raise ValueError("this method needs gradients")
    return g


@register_method("gradcam", "Grad-CAM")
class GradCAM(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): ``w_k = (1/Z) sum_ij G_kij``; ``cam = sum_k w_k A_k``."""

    def weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        return _grad(g).mean(dim=_SPATIAL)


@register_method("gradcampp", "Grad-CAM++")
class GradCAMPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19), closed form with exponential scores.

    ``alpha_kij = G^2 / (2 G^2 + (sum_ab A_kab) G^3 + 1e-6)`` (0 where ``G = 0``);
    ``w_k = sum_ij alpha_kij * ReLU(G_kij)``; ``cam = sum_k w_k A_k``.
    """

    def weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        g = _grad(g)
        g2 = g * g
        sum_a = a.sum(dim=_SPATIAL, keepdim=True)
        alpha = g2 / (2 * g2 + sum_a * g2 * g + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        return (alpha * g.clamp_min(0)).sum(dim=_SPATIAL)


@register_method("hirescam", "HiResCAM")
class HiResCAM(CamMethod):
    """HiResCAM (Draelos & Carin 2020): ``cam_ij = sum_k G_kij * A_kij`` (no spatial averaging)."""

    def cam(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        return (_grad(g) * a).sum(dim=1)


@register_method("xgradcam", "XGrad-CAM")
class XGradCAM(CamMethod):
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij G_kij * A_kij / (sum_ab A_kab + 1e-7)``."""

    def weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        sum_a = a.sum(dim=_SPATIAL, keepdim=True)
        return (_grad(g) * a / (sum_a + 1e-7)).sum(dim=_SPATIAL)


@register_method("layercam", "LayerCAM")
class LayerCAM(CamMethod):
    """LayerCAM (Jiang et al. 2021): ``cam_ij = sum_k ReLU(G_kij) * A_kij``."""

    def cam(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        return (_grad(g).clamp_min(0) * a).sum(dim=1)


def principal_projections(
    a: torch.Tensor, solver: str = "gram"
) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of each sample's pixels: ``X`` (B, Z, K) = A reshaped, channel means removed.

    Returns ``(P, V)``: ``P`` (B, Z, R) the projections ``p_i = X v_i = S_i U_i`` of the pixels
    on the principal components, ``V`` (B, R) their variances ``S_i^2``, in decreasing order
    (R = min(Z, K)). ``solver="svd"`` uses ``torch.linalg.svd(X, full_matrices=False)``;
    ``"gram"`` (default) gets the same components from ``torch.linalg.eigh`` of the smaller
    Gram matrix (Z x Z or K x K) in float64: MKL's float32 SVD of a 49 x 2048 matrix took
    25-400 ms on our 2-core CPU, the eigh well under 1 ms.
    """
    x = torch.nan_to_num(a.detach()).flatten(2).transpose(1, 2).double()
    x = x - x.mean(dim=1, keepdim=True)
    if solver == "svd":
        xf = x.float()
        _, s, vh = torch.linalg.svd(xf, full_matrices=False)
        return torch.einsum("bzk,brk->bzr", xf, vh), s * s
    if solver != "gram":
        raise ValueError("solver must be 'gram' or 'svd'")
    z, k = x.shape[1:]
    if z <= k:
        var, vecs = torch.linalg.eigh(x @ x.transpose(1, 2))  # ascending
        var, vecs = var.flip(-1).clamp_min(0), vecs.flip(-1)
        proj = vecs * var.sqrt()[:, None, :]
    else:
        var, vecs = torch.linalg.eigh(x.transpose(1, 2) @ x)
        var, vecs = var.flip(-1).clamp_min(0), vecs.flip(-1)
        proj = x @ vecs
    return proj.float(), var.float()


def _signs(proj: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """(B, R) signs making each projection (B, Z, R) correlate positively with the mean map."""
    mean_map = a.float().mean(dim=1).flatten(1)
    mean_map = mean_map - mean_map.mean(dim=1, keepdim=True)
    sign = torch.einsum("bzr,bz->br", proj, mean_map).sign()
    return torch.where(sign == 0, torch.ones_like(sign), sign)


@register_method("eigencam", "Eigen-CAM")
class EigenCAM(CamMethod):
    """Eigen-CAM (Muhammad & Yeasin 2020): projection on the first principal component.

    ``X`` = A as (Z, K) with channel means removed, ``X = U S V^T``; ``p = X v_1`` reshaped to
    (h, w); ``cam = sign * p`` with the sign that makes ``p`` correlate positively with the mean
    activation map (as HayCAM+; Eigen-CAM = HayCAM+ with n = 1). Class-agnostic, no gradient.
    SVD signs are arbitrary and numpy's and torch's LAPACK pick them differently (seen on
    VGG16), so pytorch-grad-cam's Eigen-CAM equals ours only up to this sign. ``solver``: see
    :func:`principal_projections`.
    """

    needs_grad = False

    def __init__(self, solver: str = "gram") -> None:
        self.solver = solver

    def cam(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        proj = principal_projections(a, self.solver)[0][:, :, :1]
        return (proj * _signs(proj, a)[:, None, :])[:, :, 0].view(a.shape[0], *a.shape[2:])


@register_method("haycam_plus", "HayCAM+")
class HayCAMPlus(CamMethod):
    """HayCAM+ (Ornek & Ceylan 2024): sum of the first ``n`` principal projections.

    ``X`` = A as (Z, K) with channel means removed, ``X = U S V^T``; ``n`` = smallest count with
    ``sum_{i<=n} S_i^2 / sum_i S_i^2 > threshold`` (default 0.9); each projection ``p_i = X v_i``
    gets the sign that makes it correlate positively with the mean activation map
    ``m_ij = (1/K) sum_k A_kij`` (PCA signs are arbitrary); ``cam = sum_{i<=n} sign_i p_i``.
    Class-agnostic, no gradient. ``info["n_components"]`` gives ``n`` per sample (0: flat A).
    """

    needs_grad = False

    def __init__(self, variance_threshold: float = 0.9, solver: str = "gram") -> None:
        if not 0.0 < variance_threshold <= 1.0:
            raise ValueError("variance_threshold must be in (0, 1]")
        self.variance_threshold, self.solver = variance_threshold, solver

    def cam_with_info(
        self, a: torch.Tensor, g: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        proj, var = principal_projections(a, self.solver)
        total = var.sum(dim=1, keepdim=True)
        ratio = var.cumsum(dim=1) / torch.where(total > 0, total, torch.ones_like(total))
        # smallest n with cumulative ratio > threshold (float slack for a ratio of exactly 1.0)
        n = (ratio < self.variance_threshold - 1e-7).sum(dim=1) + 1
        n = torch.where(total[:, 0] > 0, n.clamp(max=var.shape[1]), torch.zeros_like(n))
        sign = _signs(proj, a)
        keep = torch.arange(var.shape[1], device=a.device)[None, :] < n[:, None]
        cam = (proj * (sign * keep)[:, None, :]).sum(dim=2)
        return cam.view(a.shape[0], *a.shape[2:]), {"n_components": n}

    def cam(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        return self.cam_with_info(a, g)[0]
