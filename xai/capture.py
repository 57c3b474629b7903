"""Capturing layer activations in one forward pass, safely on a model shared between threads.

Own code rather than pytorch-grad-cam's ``ActivationsAndGradients``: that class keeps hooks on
the model for the object's lifetime and records gradients with a full ``.backward()``; here
hooks live only for one forward, and gradients come from ``torch.autograd.grad`` afterwards.

Lifecycle of one :func:`forward_capture` call (all of it under a per-model lock):

1. save every submodule's train flag, switch the model to eval mode;
2. register a forward hook on each requested layer; a hook only records calls made by the
   calling thread into a per-call dict (another thread's forward is ignored);
3. run the forward under ``no_grad``; when gradients are wanted, the first hook that fires turns
   grad mode on and makes its output a leaf, so only the part of the network after the first
   captured layer is recorded (cheaper than recording the whole network, and no parameter flag
   is touched: parameters keep ``requires_grad``, and ``autograd.grad(..., inputs=activations)``
   never computes weight gradients nor writes ``.grad``);
4. each hook returns a clone of the layer output to the rest of the network, so an in-place op
   after the layer (``ReLU(inplace=True)``, DenseNet's final ``F.relu(..., inplace=True)``)
   cannot change the captured tensor;
5. in ``finally``: hooks removed, train flags and grad mode restored -- also when the forward
   raises.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Captured",
    "LayerCapture",
    "eval_mode",
    "forward_capture",
    "model_lock",
    "resolve_module",
]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises hook registration, forward and mode changes of ``model``."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = threading.RLock()
            _LOCKS[model] = lock
        return lock


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule with dotted name ``name`` (``""`` is the model); clear ``ValueError`` if absent."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"model {type(model).__name__} has no layer {name!r}") from None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's own flag on exit (even on error)."""
    flags = {m: m.training for m in model.modules()}
    changed = any(flags.values())
    if changed:
        model.eval()
    try:
        yield
    finally:
        if changed:
            for module, flag in flags.items():
                module.training = flag


@dataclass
class Captured:
    """Output of one forward pass: the logits and each captured layer's activations."""

    logits: torch.Tensor
    activations: dict[str, torch.Tensor]


class LayerCapture:
    """Context manager owning the forward hooks of one capture; hooks are removed in ``__exit__``.

    Exceptions are never swallowed. Use :func:`forward_capture` rather than this class directly:
    it also takes the model lock and sets eval mode.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], need_grad: bool) -> None:
        self.model = model
        self.layers = list(dict.fromkeys(layers))
        self.modules = {name: resolve_module(model, name) for name in self.layers}
        self.need_grad = need_grad
        self.activations: dict[str, torch.Tensor] = {}
        self._owner = threading.get_ident()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):  # noqa: ANN202 - hook signature is torch's
        def hook(module: nn.Module, inputs: object, output: object) -> torch.Tensor | None:
            if threading.get_ident() != self._owner:
                return None  # another thread's forward through the shared model
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            if output.dim() != 4:
                raise ValueError(f"layer {name!r} gives a {output.dim()}-D output "
                                 f"{tuple(output.shape)}; CAM needs (B, K, h, w) feature maps")
            if self.need_grad:
                torch.set_grad_enabled(True)  # record only from here on; restored by the caller
                if not output.requires_grad:
                    output = output.detach().requires_grad_(True)
                self.activations[name] = output
            else:
                self.activations[name] = output.detach().clone()
            return output.clone()

        return hook

    def __enter__(self) -> LayerCapture:
        try:
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook this capture registered (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def forward_capture(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], need_grad: bool
) -> Captured:
    """One forward of ``x``; returns logits and the activations of ``layers`` (dotted names).

    With ``need_grad`` the activations are in the autograd graph of the logits, ready for
    ``torch.autograd.grad(score, activations)``. Thread-safe; see the module docstring.
    """
    with model_lock(model), torch.inference_mode(False):
        layout = torch.channels_last if x.dim() == 4 else torch.preserve_format
        x = x.detach().clone(memory_format=layout)  # channels-last: faster convs on CPU and GPU
        with LayerCapture(model, layers, need_grad) as capture, eval_mode(model), torch.no_grad():
            logits = model(x)
    missing = [name for name in capture.layers if name not in capture.activations]
    if missing:
        raise ValueError(f"layer(s) {', '.join(missing)} did not run during the forward pass")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError("the model must return a (batch, classes) tensor of logits")
    return Captured(logits, capture.activations)

