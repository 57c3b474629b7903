"""Engine behaviour: targets, stages, safety (hooks, modes, flags, threads)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from tests.model_state import hook_count
from tests.xai.conftest import STAGES, TinyNet, make_tiny
from xai import SINGLE_PASS, available_methods, explain_batch, explain_tensor, resolve_methods
from xai.capture import forward_capture
from xai.methods import GradCAM


def _gradcam_reference(model: nn.Module, x: torch.Tensor, score_fn) -> torch.Tensor:
    """Grad-CAM the textbook way: retain_grad + backward on the score."""
    store = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: store.setdefault("a", o.clone()))
    try:
        xx = x.clone().requires_grad_(True)
        logits = model(xx)
    finally:
        handle.remove()
    a = store["a"]
    (g,) = torch.autograd.grad(score_fn(logits), [a])
    return GradCAM().cam(a.detach(), g)


def test_maps_shape_range_and_metadata(tiny: TinyNet, images: torch.Tensor) -> None:
    names = available_methods(STAGES, include_expensive=False)
    exps = explain_batch(tiny, images[:2], target_layer="layer4", stage_layers=STAGES,
                         methods="all", class_names=["a", "b", "c"])
    assert len(exps) == 2
    for e in exps:
        assert list(e.maps) == names
        assert e.probabilities.shape == (3,) and abs(e.probabilities.sum() - 1) < 1e-5
        assert e.label in ("a", "b", "c") and 0 < e.confidence <= 1
        for cam in e.maps.values():
            assert cam.map.shape == (32, 32) and cam.map.dtype == np.float32
            assert np.isfinite(cam.map).all() and cam.map.min() >= 0 and cam.map.max() <= 1
            assert cam.ms >= 0 and cam.layer
            if not cam.flat:
                assert cam.map.max() == pytest.approx(1.0)
        assert e.maps["gradcam_stage3"].layer == "layer3"
        assert e.maps["gradcam_fused"].layer == "layer3+layer4"
        np.testing.assert_allclose(e.maps["gradcam_stage4"].map, e.maps["gradcam"].map, atol=1e-6)
        assert e.maps["haycam_plus"].info["n_components"] >= 1


def test_fused_is_normalised_mean_of_stages(tiny: TinyNet, images: torch.Tensor) -> None:
    e = explain_tensor(tiny, images[0], target_layer="layer4", stage_layers=STAGES,
                       methods="stages")
    mean = (e.maps["gradcam_stage3"].map + e.maps["gradcam_stage4"].map) / 2
    expected = (mean - mean.min()) / (mean.max() - mean.min())
    np.testing.assert_allclose(e.maps["gradcam_fused"].map, expected, atol=1e-5)


def test_gradients_are_of_the_raw_logit_of_the_target(tiny: TinyNet, images: torch.Tensor) -> None:
    x = images[:1]
    for target in (0, 2, "c", "B"):
        e = explain_tensor(tiny, x, target_layer="layer4", methods="hirescam", target=target,
                           class_names=["a", "b", "c"])
        index = {"c": 2, "B": 1}.get(target, target)
        assert e.target_index == index
        e_gc = explain_tensor(tiny, x, target_layer="layer4", methods="gradcam", target=target,
                              class_names=["a", "b", "c"])
        ref = _gradcam_reference(tiny, x, lambda z, i=index: z[0, i])
        from xai.maps import normalize_cams

        ref_map, _ = normalize_cams(ref, (32, 32))
        np.testing.assert_allclose(e_gc.maps["gradcam"].map, ref_map[0].numpy(), atol=1e-5)


def test_binary_single_logit_model() -> None:
    model = make_tiny(num_classes=1)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        z = float(model(x)[0, 0])
    e = explain_tensor(model, x, target_layer="layer4", methods="gradcam",
                       class_names=["normal", "pneumonia"])
    assert e.predicted_index == int(z > 0) and e.target_index == e.predicted_index
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(e.probabilities, [1 - p, p], rtol=1e-5)
    from xai.maps import normalize_cams

    for cls, sign in ((1, 1.0), (0, -1.0)):
        e = explain_tensor(model, x, target_layer="layer4", methods="gradcam", target=cls)
        ref, _ = normalize_cams(_gradcam_reference(model, x, lambda o, s=sign: s * o[0, 0]),
                                (32, 32))
        np.testing.assert_allclose(e.maps["gradcam"].map, ref[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        explain_tensor(model, x, target_layer="layer4", methods="gradcam", target=2)


def test_bad_requests_are_clear_errors(tiny: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        explain_tensor(tiny, images[0], target_layer="layer4", methods="gradcam,nope")
    with pytest.raises(ValueError, match="no layer 'layer9'"):
        explain_tensor(tiny, images[0], target_layer="layer9", methods="gradcam")
    with pytest.raises(ValueError, match="unknown target class 'zebra'"):
        explain_tensor(tiny, images[0], target_layer="layer4", methods="gradcam", target="zebra",
                       class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="needs stage layers"):
        resolve_methods("stages")
    with pytest.raises(ValueError, match="bad options"):
        explain_tensor(tiny, images[0], target_layer="layer4", methods="dt_gradcam",
                       options={"dt_gradcam": {"bogus": 1}})
    assert hook_count(tiny) == 0


class _Exploding(nn.Module):
    """Raises in its forward AFTER the captured layer has run (hooks are registered then)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_tiny()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net.layer4(self.net.layer3(self.net.stem(x)))
        raise RuntimeError("boom")


def test_hooks_released_and_state_restored_on_error() -> None:
    model = _Exploding().train()
    model.net.layer3.eval()  # mixed modes must come back exactly
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    grad_mode = torch.is_grad_enabled()
    with pytest.raises(RuntimeError, match="boom"):
        explain_tensor(model, torch.randn(1, 3, 32, 32), target_layer="net.layer4",
                       methods="gradcam")
    assert hook_count(model) == 0
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert torch.is_grad_enabled() == grad_mode


def test_state_restored_and_no_weight_gradients(tiny: TinyNet, images: torch.Tensor) -> None:
    tiny.train()
    tiny.stem.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in tiny.named_parameters()}
    exp_train = explain_tensor(tiny, images[0], target_layer="layer4", stage_layers=STAGES,
                               methods="all")
    assert tiny.training and all(m.training for m in tiny.modules())
    assert {n: p.requires_grad for n, p in tiny.named_parameters()} == flags
    assert all(p.grad is None for p in tiny.parameters())
    assert hook_count(tiny) == 0
    tiny.eval()
    exp_eval = explain_tensor(tiny, images[0], target_layer="layer4", stage_layers=STAGES,
                              methods="all")
    for name in exp_eval.maps:  # explained in eval mode either way (Dropout off)
        np.testing.assert_allclose(exp_train.maps[name].map, exp_eval.maps[name].map, atol=1e-6)


def test_works_under_caller_no_grad_and_inference_mode(tiny: TinyNet, images: torch.Tensor) -> None:
    ref = explain_tensor(tiny, images[0], target_layer="layer4", methods="single_pass")
    with torch.no_grad():
        a = explain_tensor(tiny, images[0], target_layer="layer4", methods="single_pass")
    with torch.inference_mode():
        x = images[0].clone()
        b = explain_tensor(tiny, x, target_layer="layer4", methods="single_pass")
        assert torch.is_inference_mode_enabled()
    for name in SINGLE_PASS:
        np.testing.assert_allclose(a.maps[name].map, ref.maps[name].map, atol=1e-6)
        np.testing.assert_allclose(b.maps[name].map, ref.maps[name].map, atol=1e-6)


def test_captured_activation_is_not_changed_by_later_inplace_ops(tiny: TinyNet) -> None:
    x = torch.randn(1, 3, 32, 32)
    # layer3's conv output is followed by BatchNorm and an in-place ReLU inside layer3.
    cap = forward_capture(tiny, x, ["layer3.0"], need_grad=True)
    a = cap.activations["layer3.0"]
    assert float(a.detach().min()) < 0  # pre-ReLU values kept
    (g,) = torch.autograd.grad(cap.logits[0, 0], [a])
    assert g.shape == a.shape and torch.isfinite(g).all()


def test_batch_equals_single_images(tiny: TinyNet, images: torch.Tensor) -> None:
    batch = explain_batch(tiny, images[:3], target_layer="layer4", methods="all",
                          stage_layers=STAGES)
    for i in range(3):
        single = explain_tensor(tiny, images[i], target_layer="layer4", methods="all",
                                stage_layers=STAGES)
        for name, cam in single.maps.items():
            np.testing.assert_allclose(batch[i].maps[name].map, cam.map, atol=1e-5)


def test_thread_safety_matches_sequential(tiny: TinyNet) -> None:
    """8 threads x 4 images on ONE shared model (plus a foreign forward loop) == sequential."""
    gen = torch.Generator().manual_seed(7)
    xs = torch.randn(8, 4, 3, 32, 32, generator=gen)
    targets = [[(t + i) % 3 for i in range(4)] for t in range(8)]
    methods = ["gradcam", "gradcampp", "layercam", "haycam_plus", "gradcam_stage3",
               "dt_gradcam"]
    options = {"dt_gradcam": {"n": 4}}

    def run(t: int, i: int) -> dict[str, np.ndarray]:
        e = explain_tensor(tiny, xs[t, i], target_layer="layer4", stage_layers=STAGES,
                           methods=methods, target=targets[t][i], options=options)
        assert e.target_index == targets[t][i]
        return {k: v.map for k, v in e.maps.items()}

    expected = {(t, i): run(t, i) for t in range(8) for i in range(4)}
    results: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(9)
    stop = threading.Event()

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(4):
                results[(t, i)] = run(t, i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def foreign() -> None:  # someone else predicting with the same model, no lock
        barrier.wait()
        with torch.inference_mode():
            while not stop.is_set():
                tiny(xs[0])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    side = threading.Thread(target=foreign)
    for th in [*threads, side]:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    side.join()
    assert not errors, errors
    for key, maps in expected.items():
        for name, ref in maps.items():
            np.testing.assert_allclose(results[key][name], ref, atol=1e-5,
                                       err_msg=f"thread {key} {name}")
    assert hook_count(tiny) == 0


def test_maps_explain_the_label_the_decision_threshold_gives(tmp_path) -> None:
    """A two-class card's decision threshold picks the label; the maps must explain that one."""
    from models.predict import predict
    from models.registry import load_for_modality
    from tests.conftest import register_tiny_model
    from xai import explain_loaded

    rgb = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    register_tiny_model(tmp_path / "plain", "xray")
    plain = load_for_modality("xray", tmp_path / "plain", device="cpu")
    p1 = float(explain_loaded(plain, rgb, methods=["gradcam"]).probabilities[1])
    flipped = p1 - 0.01 if p1 < 0.5 else p1 + 0.01  # the threshold reverses argmax's answer
    register_tiny_model(tmp_path / "tuned", "xray", decision_threshold=flipped)
    tuned = load_for_modality("xray", tmp_path / "tuned", device="cpu")
    explanation = explain_loaded(tuned, rgb, methods=["gradcam"])
    prediction = predict(tuned, rgb, views=False)
    assert explanation.predicted_index == prediction.index == (1 if p1 < 0.5 else 0)
    assert explanation.target_index == prediction.index and explanation.label == prediction.label
    assert explanation.predicted_index != int(np.argmax(explanation.probabilities))
