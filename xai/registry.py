"""Method registry: every CAM method is a small class registered by name.

Two kinds of method exist:

* :class:`CamMethod` -- a pure function of one layer's activations ``A`` (B, K, h, w) and, when
  ``needs_grad``, the gradient ``G = dY/dA`` of the target score (same shape). These all share
  ONE forward and ONE gradient pass in :mod:`xai.engine`. A method overrides only
  :meth:`CamMethod.weights` (channel weights, ``cam = sum_k w_k A_k``) or :meth:`CamMethod.cam`.
* :class:`PassMethod` -- a method that needs passes of its own (DT Grad-CAM's noisy copies,
  Score-CAM's masked inputs); it receives a :class:`PassContext` and returns final maps.

The registry is the one place that knows a method's metadata (:func:`method_info`): its
``kind`` (which pass it needs: :data:`SHARED_PASS` or :data:`OWN_PASSES`), whether it needs the
gradient, whether it is ``expensive`` (minutes on a CPU: run only when named), and whether it is
a ``variant_of`` another method (fast Score-CAM approximates Score-CAM). Engine, compare page
and app pages ask :func:`method_names` instead of listing names.

Names are lower-case identifiers (``gradcam``, ``gradcampp``, ``haycam_plus`` ...); a few
aliases (``gradcam++``, ``haycam+``, ``dt-gradcam`` ...) are accepted by :func:`canonical_name`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, TypeVar

import torch

if TYPE_CHECKING:
    from xai.capture import Captured

__all__ = [
    "ALIASES",
    "KINDS",
    "OWN_PASSES",
    "SHARED_PASS",
    "CamMethod",
    "MethodInfo",
    "PassContext",
    "PassMethod",
    "PassResult",
    "canonical_name",
    "get_method",
    "method_info",
    "method_names",
    "register_method",
    "registered_methods",
]

SHARED_PASS = "shared_pass"
"""Kind of a method computed from the ONE shared forward + gradient pass (:class:`CamMethod`)."""
OWN_PASSES = "own_passes"
"""Kind of a method that runs passes of its own (:class:`PassMethod`)."""
KINDS = (SHARED_PASS, OWN_PASSES)


class CamMethod:
    """Base class of single-pass methods: ``cam = sum_k w_k * A_k`` with ``w = weights(A, G)``.

    ``A`` and ``G`` are float tensors of shape (B, K, h, w); the returned raw map has shape
    (B, h, w) and is NOT yet rectified or normalised (the engine applies ReLU, min-max,
    bilinear upsampling to the input size and min-max again, like pytorch-grad-cam).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    kind: ClassVar[str] = SHARED_PASS
    needs_grad: ClassVar[bool] = True
    expensive: ClassVar[bool] = False
    variant_of: ClassVar[str | None] = None

    def weights(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """Channel weights (B, K)."""
        raise NotImplementedError(f"{type(self).__name__} must define weights() or cam()")

    def cam(self, a: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """Raw map (B, h, w): weighted sum of the activation channels."""
        w = self.weights(a, g)
        return torch.einsum("bk,bkhw->bhw", w, a)

    def cam_with_info(
        self, a: torch.Tensor, g: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Raw map plus per-sample extra numbers (e.g. HayCAM+'s component count)."""
        return self.cam(a, g), {}


@dataclass(frozen=True)
class PassResult:
    """Final maps of a :class:`PassMethod`: (B, H, W) in [0, 1], flags and per-sample extras."""

    maps: torch.Tensor
    flat: torch.Tensor
    layer: str
    info: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: torch.Tensor | None = None


@dataclass
class PassContext:
    """What a :class:`PassMethod` may use: the model, the input batch and the shared pass.

    ``capture(x, layers, need_grad)`` runs one thread-safe forward with hooks (see
    :func:`xai.capture.forward_capture`); ``infer(x)`` runs a plain inference-mode forward in eval
    mode; ``score(logits, targets)`` gives the target score (raw logit) per sample.
    ``activations`` holds the detached activations of the main pass for the input batch, ``logits``
    its logits (None when the caller has none: :meth:`clean_logits` then runs ``infer``).
    """

    model: torch.nn.Module
    x: torch.Tensor
    targets: torch.Tensor
    target_layer: str
    activations: Mapping[str, torch.Tensor]
    capture: Callable[[torch.Tensor, list[str], bool], Captured]
    infer: Callable[[torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    options: Mapping[str, object] = field(default_factory=dict)
    logits: torch.Tensor | None = None

    def clean_logits(self) -> torch.Tensor:
        """Logits of the unperturbed batch ``x`` (from the main pass when known)."""
        return self.logits if self.logits is not None else self.infer(self.x)


class PassMethod:
    """Base class of methods that run passes of their own; ``run`` returns final maps."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    kind: ClassVar[str] = OWN_PASSES
    needs_grad: ClassVar[bool] = True
    expensive: ClassVar[bool] = False
    variant_of: ClassVar[str | None] = None

    def run(self, ctx: PassContext) -> PassResult:
        """Compute the maps for every sample of ``ctx.x``."""
        raise NotImplementedError


MethodClass = type[CamMethod] | type[PassMethod]
_T = TypeVar("_T", bound=type)
_REGISTRY: dict[str, MethodClass] = {}

ALIASES: dict[str, str] = {
    "grad-cam": "gradcam",
    "gradcam++": "gradcampp",
    "grad-cam++": "gradcampp",
    "gradcamplusplus": "gradcampp",
    "xgrad-cam": "xgradcam",
    "layer-cam": "layercam",
    "eigen-cam": "eigencam",
    "haycam+": "haycam_plus",
    "haycamplus": "haycam_plus",
    "dt-gradcam": "dt_gradcam",
    "dtgradcam": "dt_gradcam",
    "score-cam": "scorecam",
    "scorecam-fast": "scorecam_fast",
}


def canonical_name(name: str) -> str:
    """Lower-case name with aliases resolved (``"Grad-CAM++"`` -> ``"gradcampp"``)."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def register_method(name: str, label: str | None = None) -> Callable[[_T], _T]:
    """Class decorator: register a :class:`CamMethod` or :class:`PassMethod` under ``name``."""

    def decorate(cls: _T) -> _T:
        if not issubclass(cls, (CamMethod, PassMethod)):
            raise TypeError(f"{cls!r} is neither a CamMethod nor a PassMethod")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        cls.label = label or name
        _REGISTRY[name] = cls
        return cls

    return decorate


def get_method(name: str) -> MethodClass:
    """The registered class for ``name`` (aliases accepted); ``KeyError`` lists known names."""
    key = canonical_name(name)
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def registered_methods() -> dict[str, MethodClass]:
    """A copy of the registry (name -> class), in registration order."""
    return dict(_REGISTRY)


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows of a method: display label, kind (:data:`SHARED_PASS` or
    :data:`OWN_PASSES`), gradient need, cost, and the method it approximates (if any)."""

    name: str
    label: str
    kind: str
    needs_grad: bool
    expensive: bool
    variant_of: str | None


def method_info(name: str) -> MethodInfo:
    """The metadata of the method ``name`` (aliases accepted); ``KeyError`` for unknown names."""
    cls = get_method(name)
    return MethodInfo(cls.name, cls.label, cls.kind, cls.needs_grad, cls.expensive,
                      cls.variant_of)


def method_names(
    kind: str | None = None, *, include_expensive: bool = True, include_variants: bool = True
) -> list[str]:
    """Registered names in registration order, filtered: only ``kind`` (when given), without
    the ``expensive`` ones, without the variants (approximations) of other methods."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown method kind {kind!r}; use one of {', '.join(KINDS)}")
    return [name for name, cls in _REGISTRY.items()
            if (kind is None or cls.kind == kind)
            and (include_expensive or not cls.expensive)
            and (include_variants or cls.variant_of is None)]
