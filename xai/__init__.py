"""Class-activation maps for the app: one shared-pass engine, overlays and localisation scores.

Entry points: :func:`explain_tensor` / :func:`explain_batch` (any ``nn.Module`` plus layer
names), :func:`explain_loaded` (a registry model plus an RGB image), :mod:`xai.overlay`,
:mod:`xai.metrics`, and the CLIs ``python -m xai.explain`` and ``python -m xai.localize``.
(The function is not called ``explain``: that name is the CLI module ``xai.explain``.) The names
load on first use (PEP 562), so the CLIs' ``--help`` answers without loading torch.
"""

from models.lazy import lazy_attributes

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

_HOME = {name: "engine" for name in __all__} | {
    name: "registry" for name in ("CamMethod", "PassMethod", "register_method")}

__getattr__ = lazy_attributes(__name__, _HOME)
