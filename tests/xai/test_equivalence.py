"""Our single-pass maps equal pytorch-grad-cam's on real architectures (random init, seeded)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torchvision
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from xai import explain_batch
from xai.capture import forward_capture

LIBRARY = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}
TOL = 1e-3
pytestmark = pytest.mark.slow

# (builder, target layer, input size). DenseNet: denseblock4, because the model applies
# F.relu(inplace=True) after `features` (norm5), which pytorch-grad-cam's hooks see aliased.
ARCHS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=5), "layer4", 96),
    "densenet121": (lambda: torchvision.models.densenet121(num_classes=5),
                    "features.denseblock4", 64),
    "vgg16": (lambda: torchvision.models.vgg16(num_classes=5), "features.29", 64),
    "tf_efficientnet_lite0": (
        lambda: timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=5),
        "bn2", 96),
}


def _library_eigen_with_sign(model, x, layer, sign):
    """pytorch-grad-cam's Eigen-CAM pipeline with the projection's sign set to ``sign``."""
    acts = forward_capture(model, x, [layer], need_grad=False).activations[layer].numpy()
    proj = get_2d_projection(acts) * sign[:, None, None]
    cams = scale_cam_image(np.maximum(proj, 0), (x.shape[-1], x.shape[-2]))
    return scale_cam_image(np.maximum(cams, 0))


def _our_eigen_sign(model, x, layer):
    """The sign our Eigen-CAM gives the library's projection (positive correlation with mean map)."""
    acts = forward_capture(model, x, [layer], need_grad=False).activations[layer].numpy()
    proj = get_2d_projection(acts).reshape(len(acts), -1)
    mean_map = acts.mean(axis=1).reshape(len(acts), -1)
    mean_map = mean_map - mean_map.mean(axis=1, keepdims=True)
    return np.where((proj * mean_map).sum(axis=1) >= 0, 1.0, -1.0).astype(np.float32)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_maps_equal_pytorch_grad_cam(arch: str) -> None:
    build, layer, size = ARCHS[arch]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    ours = explain_batch(model, x, target_layer=layer, methods=list(LIBRARY))
    module = model.get_submodule(layer)
    for name, cls in LIBRARY.items():
        got = np.stack([e.maps[name].map for e in ours])
        assert got.shape == (2, size, size) and got.dtype == np.float32
        assert not any(e.maps[name].flat for e in ours)
        if name == "eigencam":
            ref = _library_eigen_with_sign(model, x, layer, _our_eigen_sign(model, x, layer))
        else:
            with cls(model=model, target_layers=[module]) as cam:
                ref = cam(input_tensor=x, targets=None)
        diff = float(np.abs(got - ref).max())
        assert diff <= TOL, f"{arch} {name}: max abs diff {diff:.2e}"
    # Our target defaults to the predicted class, like the library's.
    with torch.no_grad():
        assert [e.target_index for e in ours] == model(x).argmax(1).tolist()


def test_eigencam_equals_library_when_signs_agree() -> None:
    """Without the sign question (our sign = LAPACK's), the library's own EigenCAM is matched."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    sign = _our_eigen_sign(model, x, "layer4")
    with EigenCAM(model=model, target_layers=[model.layer4]) as cam:
        ref = cam(input_tensor=x, targets=None)
    ours = np.stack([e.maps["eigencam"].map
                     for e in explain_batch(model, x, target_layer="layer4", methods="eigencam")])
    lib_sign = _library_eigen_with_sign(model, x, "layer4", np.ones(2, np.float32))
    checked = 0
    for i in range(2):
        if np.abs(lib_sign[i] - ref[i]).max() < TOL and sign[i] > 0:
            assert np.abs(ours[i] - ref[i]).max() <= TOL
            checked += 1
    assert checked >= 1
