"""Score-CAM: exact mode equals pytorch-grad-cam's; fast mode with all channels equals exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import ScoreCAM as LibraryScoreCAM

from tests.xai.conftest import TinyNet
from xai import explain_batch
from xai.folding import inference_copy


def test_exact_equals_library(tiny: TinyNet, images: torch.Tensor) -> None:
    x = images[:2]
    ours = explain_batch(tiny, x, target_layer="layer4", methods="scorecam",
                         options={"scorecam": {"batch_size": 7}})
    with LibraryScoreCAM(model=tiny, target_layers=[tiny.layer4]) as cam:
        cam.batch_size = 16
        ref = cam(input_tensor=x, targets=None)
    got = np.stack([e.maps["scorecam"].map for e in ours])
    assert float(np.abs(got - ref).max()) <= 1e-3


def test_fast_with_all_channels_equals_exact(tiny: TinyNet, images: torch.Tensor) -> None:
    x = images[:1]
    exact = explain_batch(tiny, x, target_layer="layer4", methods="scorecam")[0]
    for fill in ("mean", "none"):
        e = explain_batch(tiny, x, target_layer="layer4", methods="scorecam_fast",
                          options={"scorecam_fast": {"top_k": 24, "fill": fill}})[0]
        np.testing.assert_allclose(e.maps["scorecam_fast"].map, exact.maps["scorecam"].map,
                                   atol=1e-5)
    few = {fill: explain_batch(tiny, x, target_layer="layer4", methods="scorecam_fast",
                               options={"scorecam_fast": {"top_k": 4, "fill": fill}})[0]
           for fill in ("mean", "none")}
    assert few["mean"].maps["scorecam_fast"].info["top_k"] == 4
    assert not np.allclose(few["mean"].maps["scorecam_fast"].map,
                           few["none"].maps["scorecam_fast"].map)


def test_constant_channels_share_one_forward(tiny: TinyNet) -> None:
    """Channels with a constant map give an all-zero mask: scored by a single zero-input pass."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # kill half of layer4's channels: their ReLU output is constant 0
        tiny.layer4[0].bias[:12] = -1e4
    folded = inference_copy(tiny)  # the masked passes run on the model's folded copy
    assert folded is not None
    calls: list[int] = []
    h = folded.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        ours = explain_batch(tiny, x, target_layer="layer4", methods="scorecam",
                             options={"scorecam": {"batch_size": 64}})[0]
    finally:
        h.remove()
    assert calls == [12, 1]  # the 12 live channels, one zero input
    with LibraryScoreCAM(model=tiny, target_layers=[tiny.layer4]) as cam:
        ref = cam(input_tensor=x, targets=None)
    assert float(np.abs(ours.maps["scorecam"].map - ref[0]).max()) <= 1e-3


@pytest.mark.slow
def test_exact_equals_library_on_resnet18() -> None:
    """A real architecture (layer2: 128 channels keeps the 2 x 128 masked passes quick)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = explain_batch(model, x, target_layer="layer2", methods="scorecam")[0]
    with LibraryScoreCAM(model=model, target_layers=[model.layer2]) as cam:
        cam.batch_size = 64
        ref = cam(input_tensor=x, targets=None)
    assert float(np.abs(ours.maps["scorecam"].map - ref[0]).max()) <= 1e-3


def test_fast_mode_channel_selection_and_fill() -> None:
    from xai.scorecam import _masks, fill_scores, mask_coverage, select_channels

    acts = torch.rand(2, 20, 5, 6, generator=torch.Generator().manual_seed(0))
    for size, tol in (((41, 51), 1e-5), ((40, 48), 0.05)):  # exact when cells hit pixels
        cov = mask_coverage(acts, size)
        brute = torch.stack([_masks(a, size).mean(dim=(1, 2)) for a in acts])
        torch.testing.assert_close(cov, brute, atol=tol, rtol=1e-4)
    mean_top = acts.mean(dim=(2, 3)).topk(3, dim=1).indices
    mixed = select_channels(acts, 7, "mixed", (40, 48))
    assert mixed.shape == (2, 7)
    for i in range(2):
        assert len(set(mixed[i].tolist())) == 7
        assert set(mean_top[i].tolist()) <= set(mixed[i].tolist())
    # fit: scores exactly linear in coverage are recovered for every channel
    truth = 3.0 * cov + 1.0
    chosen = select_channels(acts, 5, "coverage", (40, 48))
    filled = fill_scores(truth.gather(1, chosen), chosen, acts, "fit", (40, 48))
    torch.testing.assert_close(filled, truth, atol=1e-4, rtol=1e-4)


def test_channels_with_equal_normalised_maps_share_one_pass(tiny: TinyNet) -> None:
    """Scaled copies of one channel map to the same mask: one masked pass for all of them."""
    from xai.registry import PassContext
    from xai.scorecam import scorecam_raw
    from xai.targets import target_scores

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    base = torch.randint(0, 9, (2, 1, 4, 4), generator=torch.Generator().manual_seed(1)) / 8
    base[:, :, 0, 0], base[:, :, 0, 1] = 0.0, 1.0  # dyadic values: scaled copies normalise equal
    acts = torch.cat([base, 2 * base + 1, 3 * base, torch.rand(2, 2, 4, 4)], dim=1)
    acts[1, 4] = 0.0  # constant channel in image 1
    sizes: list[int] = []

    def infer(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(batch.shape[0])
        with torch.inference_mode():
            return tiny(batch)

    ctx = PassContext(model=tiny, x=x, targets=torch.tensor([0, 2]), target_layer="l",
                      activations={"l": acts}, capture=None, infer=infer,  # type: ignore[arg-type]
                      score=target_scores)
    raw = scorecam_raw(ctx, batch_size=64)
    assert sizes == [2 + 2 + 1, 1]  # image 0: base + 2 others; image 1: base + 1; then zeros
    # same result as scoring every channel on its own
    from xai.scorecam import _masks

    expected = []
    for i in range(2):
        masks = _masks(acts[i], (32, 32))
        with torch.inference_mode():
            logits = tiny(x[i] * masks[:, None])
        w = torch.softmax(logits[:, [0, 2][i]], dim=0)
        expected.append(torch.einsum("k,khw->hw", w, acts[i]))
    torch.testing.assert_close(raw, torch.stack(expected), atol=1e-4, rtol=1e-4)
