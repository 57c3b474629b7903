"""Method formulas on hand-made tensors: HayCAM+, Eigen-CAM, Grad-CAM family, flat maps."""

from __future__ import annotations

import pytest
import torch

from xai.maps import normalize_cams
from xai.methods import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HayCAMPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
    principal_projections,
)
from xai.registry import canonical_name, get_method, registered_methods


def _known_components() -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """A (1, 6, 4, 4) with three principal components of std 4, 3, 1 and channel offsets."""
    ones = torch.ones(4, 4)
    left_right = torch.cat([ones[:, :2], -ones[:, 2:]], dim=1) / 4
    top_bottom = torch.cat([ones[:2], -ones[2:]], dim=0) / 4
    quadrants = left_right * top_bottom * 4
    us = [left_right.flatten(), top_bottom.flatten(), quadrants.flatten()]
    vs = [torch.tensor(v, dtype=torch.float32) / 2 ** 0.5 for v in
          ([1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1])]
    s = [4.0, 3.0, 1.0]
    x = sum(si * torch.outer(u, v) for si, u, v in zip(s, us, vs, strict=True))  # (Z, K)
    x = x + torch.tensor([0.5, 1.0, 2.0, -1.0, 3.0, 0.0])  # per-channel offsets: centred away
    return x.T.reshape(1, 6, 4, 4), us, s


@pytest.mark.parametrize(("threshold", "n"), [(0.9, 2), (0.5, 1), (0.97, 3)])
def test_haycam_plus_known_components(threshold: float, n: int) -> None:
    a, us, s = _known_components()
    cam, info = HayCAMPlus(variance_threshold=threshold).cam_with_info(a, None)
    expected = sum(s[i] * us[i] for i in range(n)).view(1, 4, 4)
    assert int(info["n_components"][0]) == n
    torch.testing.assert_close(cam, expected, atol=1e-4, rtol=1e-4)


def test_haycam_sign_follows_mean_activation() -> None:
    a, us, s = _known_components()
    # Flipping every channel's sign flips the mean map, so the map must flip too.
    cam, _ = HayCAMPlus().cam_with_info(-a, None)
    torch.testing.assert_close(cam, -(s[0] * us[0] + s[1] * us[1]).view(1, 4, 4), atol=1e-4,
                               rtol=1e-4)


def test_eigencam_is_first_component_and_solvers_agree() -> None:
    a, us, s = _known_components()
    torch.testing.assert_close(EigenCAM().cam(a, None), (s[0] * us[0]).view(1, 4, 4), atol=1e-4,
                               rtol=1e-4)
    real = torch.randn(2, 64, 5, 5).relu()
    p_gram, v_gram = principal_projections(real, "gram")
    p_svd, v_svd = principal_projections(real, "svd")
    torch.testing.assert_close(v_gram[:, :5], v_svd[:, :5], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(p_gram[..., :3].abs(), p_svd[..., :3].abs(), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(EigenCAM("svd").cam(real, None), EigenCAM("gram").cam(real, None),
                               atol=1e-3, rtol=1e-3)


def test_gradient_formulas_by_hand() -> None:
    a = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[0.0, 1.0], [3.0, 0.0]]]])
    g = torch.tensor([[[[0.5, -1.0], [1.0, 0.5]], [[-0.5, 0.0], [1.0, 1.0]]]])
    w = torch.tensor([[0.25, 0.375]])  # spatial means of g
    torch.testing.assert_close(GradCAM().cam(a, g), (w[0, :, None, None] * a[0]).sum(0)[None])
    torch.testing.assert_close(HiResCAM().cam(a, g), (g * a).sum(1))
    torch.testing.assert_close(LayerCAM().cam(a, g), (g.clamp_min(0) * a).sum(1))
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    wx = (g * a / (sum_a + 1e-7)).sum(dim=(2, 3))
    torch.testing.assert_close(XGradCAM().weights(a, g), wx)
    # Grad-CAM++ with a single positive gradient g at one position: alpha = g^2/(2g^2+S g^3).
    g1 = torch.zeros_like(a)
    g1[0, 0, 0, 0] = 2.0
    s0 = float(a[0, 0].sum())
    alpha = 4.0 / (8.0 + s0 * 8.0 + 1e-6)
    torch.testing.assert_close(GradCAMPlusPlus().weights(a, g1), torch.tensor([[alpha * 2.0, 0.0]]))


def test_flat_and_nan_maps_are_zero_with_flag() -> None:
    a = torch.zeros(2, 4, 3, 3)
    g = torch.randn(2, 4, 3, 3)
    for method in (GradCAM(), HiResCAM(), EigenCAM(), HayCAMPlus()):
        maps, flat = normalize_cams(method.cam(a, g), (12, 12))
        assert bool(flat.all()) and float(maps.abs().max()) == 0.0
    info = HayCAMPlus().cam_with_info(a, None)[1]
    assert info["n_components"].tolist() == [0, 0]
    bad = torch.randn(2, 4, 3, 3)
    bad[0, 0, 0, 0] = float("nan")
    bad[1, 1, 1, 1] = float("inf")
    maps, flat = normalize_cams(HiResCAM().cam(bad, torch.ones_like(bad)), (12, 12))
    assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    const = torch.full((1, 3, 3), 5.0)
    maps, flat = normalize_cams(const, (6, 6))
    assert bool(flat[0]) and float(maps.max()) == 0.0


def test_registry_names_and_aliases() -> None:
    names = set(registered_methods())
    assert {"gradcam", "gradcampp", "hirescam", "xgradcam", "layercam", "eigencam",
            "haycam_plus", "dt_gradcam", "scorecam", "scorecam_fast"} <= names
    assert canonical_name("Grad-CAM++") == "gradcampp"
    assert get_method("HayCAM+") is HayCAMPlus
    with pytest.raises(KeyError, match="unknown method"):
        get_method("nope")
    for name, cls in registered_methods().items():
        assert cls.__doc__ and cls.name == name and cls.label
