"""Class-activation maps for the app: one shared-pass engine, overlays and localisation scores.

Entry points: :func:`explain_tensor` / :func:`explain_batch` (any ``nn.Module`` plus layer
names), :func:`explain_loaded` (a registry model plus an RGB image), :mod:`xai.overlay`,
:mod:`xai.metrics`, and the CLIs ``python -m xai.explain`` and ``python -m xai.localize``.
(The function is not called ``explain``: that name is the CLI module ``xai.explain``.)
"""

from xai.engine import (
    DEFAULT_METHODS,
    FUSED,
    SINGLE_PASS,
    CamMap,
    Explanation,
    available_methods,
    explain_batch,
    explain_loaded,
    explain_tensor,
    explain_view,
    method_label,
    resolve_methods,
)
from xai.registry import CamMethod, PassMethod, register_method

__all__ = [
    "DEFAULT_METHODS",
    "FUSED",
    "SINGLE_PASS",
    "CamMap",
    "CamMethod",
    "Explanation",
    "PassMethod",
    "available_methods",
    "explain_batch",
    "explain_loaded",
    "explain_tensor",
    "explain_view",
    "method_label",
    "register_method",
    "resolve_methods",
]
