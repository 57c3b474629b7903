from __future__ import annotations

import pytest
import torch
from torch import nn

from models.zoo import ArchSpec, build_model, get_arch, list_archs, parameter_count, register_arch

STUDY_ARCHS = {
    "resnet18", "resnet50", "resnet152", "vgg16", "vgg19", "densenet121", "densenet201",
    "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "inception_v3", "xception",
    "inception_resnet_v2", "tf_efficientnet_lite0", "dalaresnet50",
}


def test_registry_covers_every_study_backbone() -> None:
    assert set(list_archs()) >= STUDY_ARCHS


@pytest.mark.parametrize("name", sorted(STUDY_ARCHS))
def test_build_forward_and_cam_layers(name: str) -> None:
    spec = get_arch(name)
    torch.manual_seed(0)
    model = build_model(name, 3, dropout=0.2).eval()
    size = 96 if spec.input_size == 224 else 160  # small inputs keep the test fast
    captured: dict[str, torch.Tensor] = {}
    layers = {"target": spec.target_layer, **spec.stage_layers}
    handles = [
        model.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, key=key: captured.__setitem__(key, out))
        for key, path in layers.items()
    ]
    try:
        with torch.no_grad():
            out = model(torch.randn(2, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    assert out.shape == (2, 3)
    for key in layers:  # each CAM layer yields a spatial feature map
        assert captured[key].ndim == 4 and captured[key].shape[0] == 2, key
    if spec.head is not None:
        head = model.get_submodule(spec.head)
        assert isinstance(head[0], nn.Dropout) and head[0].p == 0.2
        assert head[1].out_features == 3


def test_stage_maps_get_coarser_or_equal() -> None:
    spec = get_arch("resnet50")
    model = build_model("resnet50", 2).eval()
    shapes = {}
    for key, path in spec.stage_layers.items():
        model.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, key=key: shapes.__setitem__(key, out.shape[-1]))
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 128))
    assert shapes["stage3"] == 2 * shapes["stage4"]


def test_unknown_arch_lists_known_names() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        get_arch("resnet9000")


def test_duplicate_registration_is_refused() -> None:
    spec = get_arch("resnet18")
    with pytest.raises(ValueError, match="already registered"):
        register_arch(ArchSpec("resnet18", spec.build, 224, "layer4", {}, "fc", "torchvision"))


def test_none_keeps_imagenet_head_and_parameter_count() -> None:
    model = build_model("resnet18", None)
    assert model.fc.out_features == 1000
    assert parameter_count(model) == 11_689_512  # torchvision's published ResNet-18 size
