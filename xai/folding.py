"""Logits-only forwards on a cached copy of the model with BatchNorm folded into its convolutions.

Passes that need only the logits -- Score-CAM's masked inputs, deletion / insertion curves,
ROAD -- run thousands of forwards. In eval mode a BatchNorm after a convolution is a per-channel
affine map, so it folds into the convolution's weight and bias; run channels-last, ResNet-50 at
224 px goes ~1.7x faster on a CPU (``bench/xai_speed.py``). Own code rather than
``torch.fx.experimental.optimization.fuse``: that one matches only the exact ``nn.BatchNorm2d``
type, so timm's ``BatchNormAct2d`` (BatchNorm + activation in one module, in EfficientNet-Lite)
stays unfolded, it cannot trace timm's "same"-padding convolutions, and it neither caches nor
checks its copy.

Safety:

* the model itself is never touched: the copy is a deep copy in eval mode, without the model's
  hooks, built under the model's lock (so no capture hook of another thread is copied);
* it is cached per model and rebuilt when any parameter or buffer changes (storage address or
  in-place version counter: ``load_state_dict``, an optimiser step, an edit under ``no_grad``);
* its first output is checked against the model's own (max |diff| <= 1e-3 x (1 + max |logit|));
  a model that cannot be traced, or whose copy disagrees, is simply run as it is.

Not safe: building the copy. ``torch.fx`` tracing patches ``torch.nn.Module.__call__`` for the
whole process while it runs, so a forward pass of any model in another thread at that moment
goes through the tracer and fails. Predictions therefore run the model itself (on
channels-last inputs), not this copy (three browser sessions predicting at once failed so).
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import weakref
from dataclasses import dataclass

import torch
from timm.layers import BatchNormAct2d, Conv2dSame, get_notrace_functions, get_notrace_modules
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from xai.capture import eval_mode, model_lock

__all__ = ["checked_copy", "fold_batchnorm", "inference_copy", "inference_forward"]

_log = logging.getLogger(__name__)

# Convolutions that apply their weight and bias linearly (a weight-standardising conv does not).
_LINEAR_CONVS = (nn.Conv2d, Conv2dSame)


class _Tracer(fx.Tracer):
    """fx tracer that keeps as leaves BatchNorm modules, timm's untraceable modules and every
    module with no convolution or BatchNorm inside (nothing to fold there), so that a classifier
    head such as ``Sequential(Dropout, Linear)`` stays one module that hooks can watch."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=tuple(get_notrace_functions()))

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        leaves = (nn.modules.batchnorm._BatchNorm, *get_notrace_modules())
        foldable = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)
        return (isinstance(module, leaves) or super().is_leaf_module(module, qualified_name)
                or not any(isinstance(m, foldable) for m in module.modules()))


def _after_norm(bn: nn.Module) -> nn.Module | None:
    """What a BatchNorm module does after normalising (None: unknown, do not fold it)."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if type(bn) is BatchNormAct2d:  # timm: batch_norm -> drop -> act
        return nn.Sequential(bn.drop, bn.act)
    return None


def fold_batchnorm(model: nn.Module) -> fx.GraphModule:
    """An eval-mode copy of ``model`` (no hooks) where each BatchNorm that is the only user of a
    convolution's output is folded into that convolution. Raises if the model cannot be traced."""
    clone = copy.deepcopy(model).eval()
    for module in clone.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks,
                      module._backward_hooks, module._backward_pre_hooks):
            hooks.clear()
    graph = _Tracer().trace(clone)
    folded = fx.GraphModule(clone, graph)
    modules = dict(folded.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(graph.nodes):
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        bn, conv_node = modules[node.target], node.args[0] if node.args else None
        if not isinstance(bn, nn.BatchNorm2d) or not isinstance(conv_node, fx.Node):
            continue
        if conv_node.op != "call_module" or calls[conv_node.target] != 1:
            continue
        conv, after = modules[conv_node.target], _after_norm(bn)
        if type(conv) not in _LINEAR_CONVS or len(conv_node.users) != 1 or after is None:
            continue
        if bn.running_mean is None or bn.running_var is None:
            continue
        conv.weight, conv.bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        if isinstance(after, nn.Identity):
            node.replace_all_uses_with(conv_node)
            graph.erase_node(node)
        else:
            parent, _, name = node.target.rpartition(".")
            setattr(folded.get_submodule(parent), name, after)
    graph.lint()
    folded.recompile()
    folded.delete_all_unused_submodules()
    return folded.eval()


@dataclass
class _Entry:
    signature: tuple[tuple[int, int], ...]
    copy: nn.Module | None  # None: run the model itself
    checked: bool = False


_CACHE: weakref.WeakKeyDictionary[nn.Module, _Entry] = weakref.WeakKeyDictionary()
_CACHE_GUARD = threading.Lock()


def _signature(model: nn.Module) -> tuple[tuple[int, int], ...]:
    return tuple((t.data_ptr(), t._version)
                 for t in itertools.chain(model.parameters(), model.buffers()))


def _plain_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with model_lock(model), eval_mode(model), torch.inference_mode():
        return model(x)


def _entry(model: nn.Module) -> _Entry:
    with model_lock(model):
        signature = _signature(model)
        with _CACHE_GUARD:
            entry = _CACHE.get(model)
        if entry is not None and entry.signature == signature:
            return entry
        try:
            folded: nn.Module | None = fold_batchnorm(model)
            folded = folded.to(memory_format=torch.channels_last)
        except Exception as exc:  # untraceable (data-dependent control flow ...): run as is
            _log.info("no folded copy of %s: %s", type(model).__name__, exc)
            folded = None
        entry = _Entry(signature, folded)
        with _CACHE_GUARD:
            _CACHE[model] = entry
        return entry


def inference_copy(model: nn.Module) -> nn.Module | None:
    """The cached folded copy of ``model`` (built if needed); None when the model runs as is."""
    return _entry(model).copy


def _copy_forward(folded: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return folded(x)


def _verify(model: nn.Module, entry: _Entry, x: torch.Tensor) -> torch.Tensor:
    """With the model's lock held: compare the unchecked copy with the model on ``x``; mark it
    checked, or drop it where it disagrees. The logits of ``x`` either way."""
    out = _copy_forward(entry.copy, x)  # type: ignore[arg-type]
    reference = _plain_forward(model, x)
    tolerance = 1e-3 * (1.0 + float(reference.abs().max()))
    if out.shape != reference.shape or float((out - reference).abs().max()) > tolerance:
        _log.info("folded copy of %s disagrees with it; running the model as is",
                  type(model).__name__)
        entry.copy = None
        return reference
    entry.checked = True
    return out


def checked_copy(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """The cached folded copy of ``model`` once it gives the model's logits on ``example`` (checked
    on the first call, under the model's lock); None when the model must run as is. Run it in
    inference mode on channels-last inputs; it has the model's named submodules (the head
    included), so a forward hook on it sees what one on the model would."""
    entry = _entry(model)
    if not entry.checked:
        with model_lock(model):
            if entry.copy is not None and not entry.checked:
                _verify(model, entry, example)
    return entry.copy


def inference_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``x`` in eval and inference mode, through the folded copy when there is one.

    Thread-safe: the copy is only read; the first call checks it under the model's lock, and
    only a checked copy runs without the lock."""
    entry = _entry(model)
    if entry.checked:
        return _copy_forward(entry.copy, x)  # type: ignore[arg-type]
    with model_lock(model):
        if entry.copy is None:
            return _plain_forward(model, x)
        return _copy_forward(entry.copy, x) if entry.checked else _verify(model, entry, x)
