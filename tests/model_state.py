"""What explaining must leave unchanged on a model: hooks, train/eval modes, parameter flags."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.nn.modules import module as torch_module

__all__ = ["ModelState", "hook_count"]


def hook_count(model: nn.Module) -> int:
    """Forward, forward-pre, backward and backward-pre hooks on ``model``'s modules and globally."""
    per_module = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                     + len(m._backward_pre_hooks) for m in model.modules())
    global_hooks = (torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks,
                    torch_module._global_backward_hooks, torch_module._global_backward_pre_hooks)
    return per_module + sum(len(hooks) for hooks in global_hooks)


@dataclass(frozen=True)
class ModelState:
    """Each submodule's train flag and each parameter's ``requires_grad`` and ``.grad`` presence."""

    training: dict[str, bool]
    requires_grad: dict[str, bool]
    has_grad: dict[str, bool]

    @classmethod
    def of(cls, model: nn.Module) -> ModelState:
        params = dict(model.named_parameters())
        return cls({name: m.training for name, m in model.named_modules()},
                   {name: p.requires_grad for name, p in params.items()},
                   {name: p.grad is not None for name, p in params.items()})
