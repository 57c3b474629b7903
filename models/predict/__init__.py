"""Prediction: the model's view of an image, its test-time views, calibrated class probabilities
and trust signals (:mod:`models.predict.inference`), and the ``python -m models.predict`` command
line (:mod:`models.predict.__main__`).

The names load on first use (PEP 562), so ``--help`` answers without loading torch.
"""

from __future__ import annotations

from models.lazy import lazy_attributes

__all__ = [
    "DEFAULT_ENTROPY_THRESHOLD",
    "Prediction",
    "decide",
    "decision_logits",
    "feature_layer",
    "main",
    "model_view",
    "predict",
    "predict_batch",
    "probabilities",
    "to_input",
    "view_logits",
    "view_to_input",
]

_HOME = {name: "inference" for name in __all__} | {"main": "__main__"}

__getattr__ = lazy_attributes(__name__, _HOME)
