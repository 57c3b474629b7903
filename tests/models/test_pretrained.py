from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.pretrained import (
    PRETRAINED_DIR_ENV,
    PretrainedUnavailable,
    lite_from_lukemelas,
    read_state_dict,
)
from models.zoo import build_model, get_arch

# ImageNet classes a photo of a cup of coffee may plausibly be: espresso, cup, coffee mug.
COFFEE_CLASSES = {967, 968, 504}


def _imagenet_input(rgb: np.ndarray, name: str) -> torch.Tensor:
    spec = get_arch(name)
    x = cv2.resize(rgb, (spec.input_size, spec.input_size), interpolation=cv2.INTER_AREA)
    x = (x.astype(np.float32) / 255 - np.float32(spec.mean)) / np.float32(spec.std)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "tf_efficientnet_lite1",
                                  "tf_efficientnet_lite2"])
def test_offline_lite_weights_recognise_the_coffee_cup(arch: str) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    model = build_model(arch, None, pretrained="imagenet").eval()
    with torch.no_grad():
        probs = model(_imagenet_input(skimage_data.coffee(), arch)).softmax(1)[0]
    top = int(probs.argmax())
    assert top in COFFEE_CLASSES
    assert probs[top] > 0.5


def test_offline_lite0_backbone_with_new_head() -> None:
    reference = build_model("tf_efficientnet_lite0", None, pretrained="imagenet")
    model = build_model("tf_efficientnet_lite0", 4, pretrained="imagenet")
    assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)
    assert model.classifier[1].out_features == 4


def test_lukemelas_mapping_is_strict() -> None:
    with pytest.raises(KeyError):
        lite_from_lukemelas({"_blocks.0._squeeze.weight": torch.zeros(1)}, (1, 2, 2, 3, 3, 4, 1))


def test_local_file_initialises_a_torchvision_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model("resnet18", None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(source.state_dict(), path)
    model = build_model("resnet18", 3, pretrained=path)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc[1].out_features == 3


def test_pretrained_dir_env_is_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(2)
    source = build_model("tf_efficientnet_lite0", None)
    save_file(source.state_dict(), str(tmp_path / "tf_efficientnet_lite0.safetensors"))
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    model = build_model("tf_efficientnet_lite0", 2, pretrained="imagenet")
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)


def test_dalaresnet_takes_resnet50_backbone_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    backbone = build_model("resnet50", None)
    path = tmp_path / "resnet50.pth"
    torch.save(backbone.state_dict(), path)
    model = build_model("dalaresnet50", 2, pretrained=path)
    assert torch.equal(model.layer4[2].conv3.weight, backbone.layer4[2].conv3.weight)
    assert model.fc[-1].out_features == 2


def test_wrong_file_for_backbone_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(build_model("resnet18", None).state_dict(), path)
    with pytest.raises(PretrainedUnavailable):
        build_model("dalaresnet50", 2, pretrained=path)


def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"weight": Payload()}, path)
    with pytest.raises(Exception):  # noqa: B017 - torch raises UnpicklingError here
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()
