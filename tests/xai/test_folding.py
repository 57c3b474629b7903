"""Folded inference copies: same logits as the model, cached, rebuilt, and safe to fall back."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from tests.xai.conftest import TinyNet, make_tiny
from xai.folding import checked_copy, inference_copy, inference_forward


def _randomised_norms(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _build(name: str) -> nn.Module:
    import timm
    import torchvision

    torch.manual_seed(0)
    if name == "tiny":
        return make_tiny()
    if name == "resnet18":
        return _randomised_norms(torchvision.models.resnet18(num_classes=5))
    return _randomised_norms(timm.create_model(name, num_classes=5))  # BatchNormAct2d, same-pad


@pytest.mark.parametrize("name", ["tiny", "resnet18", "tf_efficientnet_lite0"])
def test_copy_folds_every_batchnorm_and_gives_the_same_logits(name: str) -> None:
    model = _build(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x)
    folded = inference_copy(model)
    assert folded is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    got = inference_forward(model, x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not model.training


def test_copy_is_cached_and_rebuilt_when_a_weight_changes(tiny: TinyNet) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = inference_copy(tiny)
    assert inference_copy(tiny) is first
    with torch.no_grad():
        tiny.layer3[1].running_mean += 0.5  # in place, as an optimiser step or a buffer update
    assert inference_copy(tiny) is not first
    with torch.inference_mode():
        expected = tiny(x)
    torch.testing.assert_close(inference_forward(tiny, x), expected, atol=1e-5, rtol=1e-5)
    tiny.load_state_dict(make_tiny(seed=3).state_dict())
    with torch.inference_mode():
        expected = tiny(x)
    torch.testing.assert_close(inference_forward(tiny, x), expected, atol=1e-5, rtol=1e-5)


def test_checked_copy_runs_instead_of_the_model(tiny: TinyNet) -> None:
    calls: list[int] = []
    handle = tiny.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        x = torch.randn(2, 3, 32, 32)
        inference_forward(tiny, x)  # first call: the copy is checked against the model
        inference_forward(tiny, x[:1])
    finally:
        handle.remove()
    assert calls == [2]
    assert not tiny._forward_hooks


class _DataDependent(nn.Module):
    """Control flow on a tensor value: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if y.sum() > 0:
            y = -y
        return y.mean(dim=(2, 3))


class _Noisy(nn.Module):
    """Traceable, but no two forwards agree: its copy cannot pass the check."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)).mean(dim=(2, 3))
        return y + torch.randn_like(y)


def test_untraceable_model_runs_as_is() -> None:
    model = _DataDependent().eval()
    x = torch.randn(2, 3, 16, 16)
    assert inference_copy(model) is None and checked_copy(model, x) is None
    with torch.inference_mode():
        expected = model(x)
    torch.testing.assert_close(inference_forward(model, x), expected)


def test_copy_that_disagrees_with_the_model_is_dropped() -> None:
    model = _Noisy().eval()
    assert inference_copy(model) is not None
    out = inference_forward(model, torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 4)
    assert inference_copy(model) is None
    other = _Noisy().eval()  # checked_copy makes the same check and gives no copy either
    assert inference_copy(other) is not None
    assert checked_copy(other, torch.randn(1, 3, 16, 16)) is None
    assert inference_copy(other) is None


def test_threads_share_one_copy_and_get_their_own_logits() -> None:
    model = _build("resnet18")
    xs = [torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(16)]
    with torch.inference_mode():
        expected = [model(x) for x in xs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda x: inference_forward(model, x), xs))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
