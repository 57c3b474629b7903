"""DT Grad-CAM: one batched pass, zero outside its Otsu mask, matches the naive definition."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tests.xai.conftest import TinyNet
from xai import explain_batch, explain_tensor
from xai.dt_gradcam import DTGradCAM, linear_weights, otsu_morph_mask
from xai.maps import minmax, upsample
from xai.methods import GradCAM


def _count_forwards(model: nn.Module) -> tuple[list[int], object]:
    calls: list[int] = []
    handle = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return calls, handle


def test_zero_outside_mask_and_one_pass(tiny: TinyNet, images: torch.Tensor) -> None:
    calls, handle = _count_forwards(tiny)
    try:
        exps = explain_batch(tiny, images[:2], target_layer="layer4", methods="dt_gradcam")
    finally:
        handle.remove()
    assert calls == [2, 16]  # main pass, then ONE pass over 2 images x 8 noisy copies
    for e in exps:
        cam = e.maps["dt_gradcam"]
        assert cam.mask is not None and cam.mask.shape == cam.map.shape and cam.mask.any()
        assert float(np.abs(cam.map[~cam.mask]).max()) == 0.0
        assert (cam.map[cam.mask] > 0).mean() > 0.9
        assert 0 < cam.info["threshold"] < 1


def test_matches_naive_per_copy_definition(tiny: TinyNet, images: torch.Tensor) -> None:
    x = images[:1]
    method = DTGradCAM(n=4, sigma=0.1, seed=3)
    e = explain_tensor(tiny, x, target_layer="layer4", methods="dt_gradcam",
                       options={"dt_gradcam": {"n": 4, "sigma": 0.1, "seed": 3}})
    copies = method.noisy_copies(x)
    target = e.target_index
    maps = []
    for i in range(4):  # naive: one Grad-CAM per noisy copy
        store = {}
        h = tiny.layer4.register_forward_hook(
            lambda m, inp, o, store=store: store.setdefault("a", o.clone()))
        try:
            logits = tiny(copies[i:i + 1])
        finally:
            h.remove()
        (g,) = torch.autograd.grad(logits[0, target], [store["a"]])
        maps.append(minmax(GradCAM().cam(store["a"].detach(), g).clamp_min(0))[0])
    w = linear_weights(4)
    mean = sum(wi * m for wi, m in zip(w, maps, strict=True)) / w.sum()
    mean = minmax(upsample(minmax(mean[None]), (32, 32)))[0].numpy()
    mask, _ = otsu_morph_mask(mean, 3)
    np.testing.assert_allclose(e.maps["dt_gradcam"].map, np.where(mask, mean, 0), atol=1e-5)
    np.testing.assert_array_equal(e.maps["dt_gradcam"].mask, mask)


def test_noise_scale_and_weights() -> None:
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, 0, 0] = 2.0  # value range 2
    copies = DTGradCAM(n=64, sigma=0.1, seed=0).noisy_copies(x)
    assert copies.shape == (64, 3, 8, 8)
    assert abs(float((copies - x).std()) - 0.2) < 0.01
    torch.testing.assert_close(linear_weights(3), torch.tensor([1.0, 0.75, 0.5]))
    assert torch.equal(DTGradCAM(seed=5).noisy_copies(x), DTGradCAM(seed=5).noisy_copies(x))


def test_otsu_morph_mask_on_a_blob() -> None:
    cam = np.zeros((40, 40), np.float32)
    cam[10:30, 10:30] = 0.9
    cam[0, 0] = 1.0  # isolated pixel: removed by the opening
    mask, t = otsu_morph_mask(cam, 3)
    assert not mask[0, 0] and mask[15:25, 15:25].all() and not mask[35:, 35:].any()
    assert 0 <= t < 0.9
