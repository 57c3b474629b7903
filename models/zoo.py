"""Architecture registry: every backbone the studies use, with what inference and CAMs need.

In the spirit of timm's ``@register_model``: each entry is a builder plus metadata (input size,
normalisation, default CAM target layer, stage layers for per-stage maps, classifier head).
``build_model`` returns the network with a fresh head of ``num_classes`` outputs, optionally
initialised from ImageNet weights (see :mod:`models.pretrained`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike

import timm
import torchvision
from torch import nn

from models.dalaresnet import DALAResNet50

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SYMMETRIC_MEAN",
    "SYMMETRIC_STD",
    "ArchSpec",
    "build_model",
    "get_arch",
    "list_archs",
    "parameter_count",
    "register_arch",
    "replace_head",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Maps [0, 1] to [-1, 1]: TF-ported models (Lite0, Xception, Inception-ResNet) and DALAResNet50.
SYMMETRIC_MEAN = (0.5, 0.5, 0.5)
SYMMETRIC_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: how to build it and where its CAM layers are.

    ``build(num_classes)`` returns the bare network with ``num_classes`` outputs and random
    weights. ``target_layer`` is the dotted name of the default CAM layer (the last conv block),
    ``stage_layers`` the layers of the per-stage maps, ``head`` the classifier module replaced
    when the class count changes (``None`` when the builder makes its own head).
    ``imagenet_source`` says where ImageNet weights come from: ``"torchvision"``,
    ``"timm:<timm name>"`` or ``"backbone:resnet50"`` (the backbone of a custom model).
    """

    name: str
    build: Callable[[int], nn.Module]
    input_size: int
    target_layer: str
    stage_layers: dict[str, str]
    head: str | None
    imagenet_source: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_REGISTRY: dict[str, ArchSpec] = {}


def register_arch(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to the registry; names are unique."""
    if spec.name in _REGISTRY:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_arch(name: str) -> ArchSpec:
    """The registered architecture ``name``; a clear error lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(list_archs())}") from None


def list_archs() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_REGISTRY)


def build_model(
    name: str,
    num_classes: int | None,
    *,
    pretrained: str | PathLike[str] | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Build architecture ``name`` with a fresh ``num_classes`` head (``None``: the 1000-class head).

    ``pretrained``: ``None`` for random init, ``"imagenet"`` for ImageNet weights from the first
    source that has them (local file, offline package, torchvision/timm cache or download), or
    the path of a local ImageNet state dict. ``dropout`` is applied before the new linear head.
    """
    from models.pretrained import load_imagenet_weights

    spec = get_arch(name)
    if spec.head is None:  # the builder owns its head (DALAResNet50)
        model = spec.build(num_classes or 1000)
        if pretrained is not None:
            load_imagenet_weights(model, spec, pretrained)
        return model
    model = spec.build(1000)
    if pretrained is not None:
        load_imagenet_weights(model, spec, pretrained)
    if num_classes is not None:
        replace_head(model, spec.head, num_classes, dropout)
    return model


def replace_head(model: nn.Module, head: str, num_classes: int, dropout: float) -> None:
    """Swap the linear classifier at dotted path ``head`` for ``Dropout -> Linear(num_classes)``."""
    old = model.get_submodule(head)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"head {head!r} is {type(old).__name__}, expected Linear")
    parent_name, _, child = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Sequential(nn.Dropout(dropout), nn.Linear(old.in_features, num_classes)))


def _torchvision(builder: Callable[..., nn.Module], **kwargs: object) -> Callable[[int], nn.Module]:
    return lambda num_classes: builder(weights=None, num_classes=num_classes, **kwargs)


def _timm(name: str) -> Callable[[int], nn.Module]:
    return lambda num_classes: timm.create_model(name, pretrained=False, num_classes=num_classes)


_RESNET_LAYERS = {"target_layer": "layer4", "stage_layers": {"stage3": "layer3", "stage4": "layer4"}}
_DENSENET_LAYERS = {
    "target_layer": "features.norm5",
    "stage_layers": {"stage3": "features.denseblock3", "stage4": "features.denseblock4"},
}

for _name, _builder in [
    ("resnet18", torchvision.models.resnet18),
    ("resnet50", torchvision.models.resnet50),
    ("resnet152", torchvision.models.resnet152),
]:
    register_arch(ArchSpec(_name, _torchvision(_builder), 224, head="fc",
                           imagenet_source="torchvision", **_RESNET_LAYERS))
for _name, _builder in [
    ("densenet121", torchvision.models.densenet121),
    ("densenet201", torchvision.models.densenet201),
]:
    register_arch(ArchSpec(_name, _torchvision(_builder), 224, head="classifier",
                           imagenet_source="torchvision", **_DENSENET_LAYERS))
# VGG: last ReLU of conv4 and conv5 blocks (before their max-pool).
register_arch(ArchSpec("vgg16", _torchvision(torchvision.models.vgg16), 224, "features.29",
                       {"stage3": "features.22", "stage4": "features.29"}, "classifier.6",
                       "torchvision"))
register_arch(ArchSpec("vgg19", _torchvision(torchvision.models.vgg19), 224, "features.35",
                       {"stage3": "features.25", "stage4": "features.35"}, "classifier.6",
                       "torchvision"))
# Mobile nets: the stride-16 and stride-32 stage ends, then the final 1x1 conv.
register_arch(ArchSpec("mobilenet_v2", _torchvision(torchvision.models.mobilenet_v2), 224,
                       "features.18", {"stage3": "features.13", "stage4": "features.17"},
                       "classifier.1", "torchvision"))
register_arch(ArchSpec("mobilenet_v3_large", _torchvision(torchvision.models.mobilenet_v3_large),
                       224, "features.16", {"stage3": "features.12", "stage4": "features.15"},
                       "classifier.3", "torchvision"))
register_arch(ArchSpec("efficientnet_b0", _torchvision(torchvision.models.efficientnet_b0), 224,
                       "features.8", {"stage3": "features.5", "stage4": "features.7"},
                       "classifier.1", "torchvision"))
register_arch(ArchSpec("inception_v3",
                       _torchvision(torchvision.models.inception_v3, aux_logits=False,
                                    init_weights=False),
                       299, "Mixed_7c", {"stage3": "Mixed_6e", "stage4": "Mixed_7c"}, "fc",
                       "torchvision"))
register_arch(ArchSpec("xception", _timm("legacy_xception"), 299, "act4",
                       {"stage3": "block11", "stage4": "act4"}, "fc", "timm:legacy_xception",
                       SYMMETRIC_MEAN, SYMMETRIC_STD))
register_arch(ArchSpec("inception_resnet_v2", _timm("inception_resnet_v2"), 299, "conv2d_7b",
                       {"stage3": "repeat_1", "stage4": "block8"}, "classif",
                       "timm:inception_resnet_v2", SYMMETRIC_MEAN, SYMMETRIC_STD))
# EfficientNet-Lite0/1/2 at their native input sizes (Tan & Le 2019; the Lite variants drop SE
# and swish for mobile accelerators).
for _variant, _size in (("0", 224), ("1", 240), ("2", 260)):
    register_arch(ArchSpec(f"tf_efficientnet_lite{_variant}", _timm(f"tf_efficientnet_lite{_variant}"),
                           _size, "bn2", {"stage3": "blocks.4", "stage4": "blocks.6"}, "classifier",
                           f"timm:tf_efficientnet_lite{_variant}", SYMMETRIC_MEAN, SYMMETRIC_STD))
register_arch(ArchSpec("dalaresnet50", lambda n: DALAResNet50(n), 224, "attention",
                       {"stage3": "layer3", "stage4": "layer4"}, None, "backbone:resnet50",
                       SYMMETRIC_MEAN, SYMMETRIC_STD))


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (for model cards and the parameters-vs-accuracy view)."""
    return sum(p.numel() for p in model.parameters())

