"""Attention supervision: training pulls each annotated image's class activation map toward
its region mask, so the evidence for a label comes from the annotated lesion.

For a network that ends in global average pooling and a linear head, the class activation map
of class ``c`` (CAM, Zhou et al. 2016, "Learning Deep Features for Discriminative
Localization") is ``M_c = sum_k w_ck A_k`` over the channels ``A_k`` of the last feature map;
the logit is its mean plus the bias, and Grad-CAM on that layer is ``relu(M_c)`` up to scale.
The loss reads the map of the image's own label ``y`` as per-cell logits of "lesion here" and
the region mask, area-averaged onto the same grid and scaled to a maximum of 1, as their soft
targets: ``L = mean_cells BCE(sigmoid(M_y), R / max R)``, added to the classification loss
with a weight. Cells inside the region are pushed positive (they light up in Grad-CAM), cells
outside negative (Grad-CAM's ReLU blanks them); unlike a loss on ``relu(M)``, every cell keeps
a gradient.
The idea of supervising a network's attention with annotations is from Li et al. 2018 ("Tell
Me Where to Look: Guided Attention Inference Network", CVPR) and Ross et al. 2017 ("Right for
the Right Reasons", IJCAI). Written here because no maintained library offers a
differentiable CAM-to-mask loss for these architectures.
"""

from __future__ import annotations

from types import TracebackType

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["RegionSupervision", "linear_head"]


def linear_head(model: nn.Module, head: str) -> nn.Linear:
    """The linear layer of the classifier module ``head`` (a Linear, or a Sequential ending in
    one, e.g. Dropout -> Linear)."""
    module = model.get_submodule(head)
    layers = [module] if isinstance(module, nn.Linear) else [
        m for m in module.modules() if isinstance(m, nn.Linear)]
    if len(layers) != 1:
        raise ValueError(f"the classifier {head!r} is not a single linear layer: region "
                         "supervision needs global average pooling and a linear head")
    return layers[0]


class RegionSupervision:
    """Within ``with``: records the feature map of ``layer`` on each forward pass, and
    :meth:`loss` compares the class activation maps it gives with region masks. The hook is
    removed on leaving, even on error."""

    def __init__(self, model: nn.Module, layer: str, head: str) -> None:
        self.model, self.layer = model, layer
        self.linear = linear_head(model, head)
        self._features: torch.Tensor | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> RegionSupervision:
        def record(_module: nn.Module, _args: object, output: torch.Tensor) -> None:
            self._features = output

        self._hook = self.model.get_submodule(self.layer).register_forward_hook(record)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._hook, self._features = None, None

    def check(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Raise ``ValueError`` now, not after hours of training, when the layer's feature map
        does not feed the linear head (one forward pass in eval mode)."""
        training = self.model.training
        self.model.eval()
        try:
            with self, torch.no_grad():
                self.model(x)
                self.maps(labels)
        finally:
            self.model.train(training)

    def maps(self, labels: torch.Tensor) -> torch.Tensor:
        """``(N, h, w)`` class activation maps of ``labels`` from the last forward pass."""
        if self._features is None:
            raise RuntimeError("no forward pass recorded: run the model inside `with`")
        features = self._features.float()
        if features.dim() != 4 or features.shape[1] != self.linear.in_features:
            raise ValueError(f"layer {self.layer!r} gives {tuple(features.shape)}, not the "
                             f"{self.linear.in_features} channels the linear head pools")
        weights = self.linear.weight.float()[labels]  # (N, C)
        return torch.einsum("nchw,nc->nhw", features, weights)

    def loss(self, labels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy between the CAM of each image's label, as per-cell logits, and
        its region (``(N, S, S)``, any non-negative scale) area-averaged onto the CAM's grid and
        scaled to a maximum of 1; over the images whose region is not empty (0 when none is)."""
        cams = self.maps(labels)
        cells = F.adaptive_avg_pool2d(regions.float().unsqueeze(1), cams.shape[-2:]).squeeze(1)
        annotated = cells.flatten(1).amax(1) > 0
        if not bool(annotated.any()):
            return cams.sum() * 0.0
        cells = cells[annotated] / cells[annotated].flatten(1).amax(1).view(-1, 1, 1)
        return F.binary_cross_entropy_with_logits(cams[annotated], cells)
