"""DT Grad-CAM: one batched pass, zero outside its Otsu mask, matches the naive definition,
lowers its noise when the noisy copies lose the decision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.xai.conftest import TinyNet
from xai import explain_batch, explain_tensor
from xai.dt_gradcam import DTGradCAM, linear_weights, otsu_morph_mask
from xai.legend import map_notes
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


class NoiseFragile(nn.Module):
    """Class 0 for smooth images: its logit falls with the Laplacian energy that noise adds."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = nn.Conv2d(3, 3, 3, padding=1, bias=False, groups=3)
        laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        with torch.no_grad():
            self.layer4.weight.copy_(laplacian.expand(3, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = self.layer4(x).abs().mean(dim=(1, 2, 3))
        return torch.stack([1.0 - 5.0 * energy, torch.zeros_like(energy)], dim=1)


def _smooth(batch: int = 2) -> torch.Tensor:
    ramp = torch.linspace(-1, 1, 24)
    return (ramp[None, :] * ramp[:, None]).expand(batch, 3, 24, 24).clone()


def test_noise_is_lowered_until_the_copies_keep_the_decision() -> None:
    model, x = NoiseFragile().eval(), _smooth()
    assert (model(x).argmax(1) == 0).all()
    fixed = explain_tensor(model, x[:1], target_layer="layer4", methods="dt_gradcam",
                           options={"dt_gradcam": {"min_kept": 0}}).maps["dt_gradcam"]
    assert fixed.info["kept"] < 0.5 and fixed.info["sigma"] == 0.1  # exactly the configured noise
    assert fixed.info["halvings"] == 0 and any("Only" in n for n in map_notes(fixed, "smooth"))
    calls, handle = _count_forwards(model)
    try:
        exps = explain_batch(model, x, target_layer="layer4", methods="dt_gradcam")
    finally:
        handle.remove()
    for e in exps:
        cam = e.maps["dt_gradcam"]
        assert cam.info["kept"] >= 0.5 and cam.info["sigma"] < 0.1
        assert cam.info["sigma"] == pytest.approx(0.1 / 2 ** cam.info["halvings"])
        assert any("Noise lowered" in n for n in map_notes(cam, "smooth"))
    # main pass and first capture with hooks; the probes run on the folded inference copy
    assert calls[:2] == [2, 16] and calls[-1] == 16 and len(calls) <= 4


def test_bad_adaptation_options_are_refused() -> None:
    with pytest.raises(ValueError, match="min_kept"):
        DTGradCAM(min_kept=1.5)
    with pytest.raises(ValueError, match="max_halvings"):
        DTGradCAM(max_halvings=-1)
