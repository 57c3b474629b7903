"""Speed of our CAM engine against pytorch-grad-cam, same model and input, in one run.

    python bench/xai_speed.py [--json] [--models resnet50,tf_efficientnet_lite0] [--size 224]
                              [--repeats 5] [--exact-scorecam resnet50,...|none]
                              [--weights NAME=PATH ...] [--out bench/results/xai_speed.json]

Measured per model (random init, seeded; CPU; median of ``--repeats`` after one warm-up):

* ``speedup_all_vs_pytorch_grad_cam``: pytorch-grad-cam's six methods one by one (Grad-CAM,
  Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Eigen-CAM) plus our HayCAM+ alone, divided by our
  engine computing all seven maps at once.
* ``dt_gradcam_speedup_vs_naive``: naive DT Grad-CAM (a forward for the predicted class, then
  pytorch-grad-cam's GradCAM once per noisy copy, N = 8, plus the same weighted average and
  Otsu + morphology) over ours (one batched pass). ``dt_gradcam_over_gradcam``: our DT Grad-CAM
  time over our single Grad-CAM time (target <= 1.2 x N).
* ``scorecam_exact_speedup``: pytorch-grad-cam's ScoreCAM over our exact Score-CAM (one run
  each: thousands of masked passes); ``scorecam_fast_ms`` and ``scorecam_fast_spearman``: our
  fast mode (``top_k`` = 16 masked passes, default selection and fill) time and its Spearman
  rank correlation with our exact map (also reported: plain top-k by mean activation).

Prints a table, writes JSON (top-level keys are the first model's, ResNet-50 by default; all
models under ``models``). The machine is shared: numbers are noisy, compare within a run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's ScoreCAM prints a bar per image

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, write_results  # noqa: E402
from xai import SINGLE_PASS, explain_tensor  # noqa: E402
from xai.dt_gradcam import DTGradCAM, linear_weights, otsu_morph_mask  # noqa: E402

TARGETS = {
    "speedup_all_vs_pytorch_grad_cam": (">=", 12.0),
    "dt_gradcam_speedup_vs_naive": (">=", 3.0),
    "dt_gradcam_over_gradcam": ("<=", 1.2 * 8),
    "scorecam_exact_speedup": (">=", 1.5),
    "scorecam_fast_ms": ("<=", 3000.0),
    "scorecam_fast_spearman": (">=", 0.9),
}
LAYERS = {"resnet50": "layer4", "tf_efficientnet_lite0": "bn2", "tf_efficientnet_lite1": "bn2",
          "tf_efficientnet_lite2": "bn2", "resnet18": "layer4",
          "densenet121": "features.denseblock4", "vgg16": "features.29"}
DT_N = 8


def build(name: str, weights: Path | None) -> nn.Module:
    """Random-init (seeded) model, or ``weights`` (a state dict) when given."""
    import timm
    import torchvision

    torch.manual_seed(0)
    if hasattr(torchvision.models, name):
        model = getattr(torchvision.models, name)(weights=None)
    else:
        model = timm.create_model(name, pretrained=False)
    if weights is not None:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, object]:
    from pytorch_grad_cam import (
        EigenCAM,
        GradCAM,
        GradCAMPlusPlus,
        HiResCAM,
        LayerCAM,
        ScoreCAM,
        XGradCAM,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    weights = args.weights.get(name)
    model = build(name, weights)
    layer_name = LAYERS[name]
    layer = model.get_submodule(layer_name)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    r = args.repeats
    res: dict[str, object] = {"layer": layer_name, "weights": str(weights) if weights else "random"}

    def ours(methods: str | list[str], **options: dict[str, object]) -> Callable[[], object]:
        return lambda: explain_tensor(model, x, target_layer=layer_name, methods=methods,
                                      options=options)

    # 1. Seven maps: library one by one vs ours at once.
    library = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "hirescam": HiResCAM,
               "xgradcam": XGradCAM, "layercam": LayerCAM, "eigencam": EigenCAM}
    lib_ms = {}
    for key, cls in library.items():
        with cls(model=model, target_layers=[layer]) as cam:
            lib_ms[key] = median_ms(lambda cam=cam: cam(input_tensor=x, targets=None), r)
    haycam_alone = median_ms(ours("haycam_plus"), r)
    ours_all = median_ms(ours(list(SINGLE_PASS)), r)
    lib_total = sum(lib_ms.values()) + haycam_alone
    res.update(library_ms=lib_ms, library_six_plus_our_haycam_ms=lib_total,
               our_haycam_alone_ms=haycam_alone, ours_all_seven_ms=ours_all,
               speedup_all_vs_pytorch_grad_cam=lib_total / ours_all)

    # 2. DT Grad-CAM, N = 8: naive (library per copy) vs ours (one batched pass).
    dt = DTGradCAM(n=DT_N)
    copies = dt.noisy_copies(x)
    weights_n = linear_weights(DT_N).numpy()

    def naive_dt() -> np.ndarray:
        with torch.inference_mode():
            target = int(model(x).argmax(1))
        targets = [ClassifierOutputTarget(target)]
        maps = np.stack([gradcam(input_tensor=copies[i:i + 1], targets=targets)[0]
                         for i in range(DT_N)])
        mean = (maps * weights_n[:, None, None]).sum(0) / weights_n.sum()
        mean = (mean - mean.min()) / (mean.max() - mean.min() + 1e-7)
        mask, _ = otsu_morph_mask(mean, 3)
        return np.where(mask, mean, 0.0)

    with GradCAM(model=model, target_layers=[layer]) as gradcam:
        naive_ms = median_ms(naive_dt, r)
    ours_dt = median_ms(ours("dt_gradcam"), r)
    ours_gc = median_ms(ours("gradcam"), r)
    res.update(dt_naive_ms=naive_ms, dt_ours_ms=ours_dt, gradcam_ours_ms=ours_gc,
               dt_gradcam_speedup_vs_naive=naive_ms / ours_dt,
               dt_gradcam_over_gradcam=ours_dt / ours_gc)

    # 3. Score-CAM: fast mode always; exact (ours and library, one run each) when asked.
    top_k = args.top_k
    fast_ms = median_ms(ours("scorecam_fast", scorecam_fast={"top_k": top_k}), max(1, r // 2))

    def fast_map(**opts: object) -> np.ndarray:
        return explain_tensor(model, x, target_layer=layer_name, methods="scorecam_fast",
                              options={"scorecam_fast": {"top_k": top_k, **opts}}
                              ).maps["scorecam_fast"].map

    default_map = fast_map()
    plain_map = fast_map(select="mean", fill="none")  # top-k by mean activation only
    res.update(scorecam_fast_ms=fast_ms, scorecam_fast_top_k=top_k)
    if name in args.exact_scorecam:
        start = time.perf_counter()
        exact = explain_tensor(model, x, target_layer=layer_name, methods="scorecam",
                               options={"scorecam": {"batch_size": args.batch_size}})
        ours_exact_ms = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        with ScoreCAM(model=model, target_layers=[layer]) as cam:
            lib_map = cam(input_tensor=x, targets=None)[0]
        lib_exact_ms = (time.perf_counter() - start) * 1000
        exact_map = exact.maps["scorecam"].map
        res.update(scorecam_exact_ours_ms=ours_exact_ms, scorecam_exact_library_ms=lib_exact_ms,
                   scorecam_exact_speedup=lib_exact_ms / ours_exact_ms,
                   scorecam_exact_max_abs_diff_vs_library=float(np.abs(exact_map - lib_map).max()),
                   scorecam_fast_spearman=spearman(default_map, exact_map),
                   scorecam_fast_spearman_plain_top_k_by_mean=spearman(plain_map, exact_map))
    return res


def _check(key: str, value: float) -> str:
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value <= bound
    return f"{'ok ' if ok else 'MISS'} ({op} {bound:g})"


def table(results: dict[str, dict[str, object]]) -> str:
    lines = []
    for name, res in results.items():
        lines.append(f"== {name} ({res['layer']}, {res['weights']}) ==")
        lib = res["library_ms"]
        assert isinstance(lib, dict)
        lines.append("pytorch-grad-cam one by one (ms): " +
                     ", ".join(f"{k} {v:.0f}" for k, v in lib.items()) +
                     f"; + our HayCAM+ alone {res['our_haycam_alone_ms']:.0f}")
        lines.append(f"library six + HayCAM+: {res['library_six_plus_our_haycam_ms']:.0f} ms   "
                     f"ours, all seven at once: {res['ours_all_seven_ms']:.0f} ms")
        lines.append(f"DT Grad-CAM N=8: naive {res['dt_naive_ms']:.0f} ms, ours "
                     f"{res['dt_ours_ms']:.0f} ms; our Grad-CAM {res['gradcam_ours_ms']:.0f} ms")
        if "scorecam_exact_ours_ms" in res:
            lines.append(f"Score-CAM exact: library {res['scorecam_exact_library_ms']:.0f} ms, "
                         f"ours {res['scorecam_exact_ours_ms']:.0f} ms (max |diff| "
                         f"{res['scorecam_exact_max_abs_diff_vs_library']:.1e}); fast top-"
                         f"{res['scorecam_fast_top_k']} by mean activation alone: Spearman "
                         f"{res['scorecam_fast_spearman_plain_top_k_by_mean']:.3f}")
        lines.append(f"{'metric':<34} {'value':>10}  target")
        for key in TARGETS:
            if key in res:
                value = float(res[key])  # type: ignore[arg-type]
                lines.append(f"{key:<34} {value:10.2f}  {_check(key, value)}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet50,tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=16, help="fast Score-CAM channels")
    parser.add_argument("--batch-size", type=int, help="exact Score-CAM batch (default: the "
                        "engine's, xai.scorecam.default_batch_size)")
    parser.add_argument("--exact-scorecam", default="resnet50",
                        help="models to run exact Score-CAM on (slow), comma-separated, or none")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                        help="state dict for a model instead of random init")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "xai_speed.json")
    parser.add_argument("--json", action="store_true", help="also print the JSON")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in LAYERS]
    if unknown:
        parser.error(f"no target layer known for {', '.join(unknown)}")
    args.exact_scorecam = set() if args.exact_scorecam == "none" else set(
        args.exact_scorecam.split(","))
    args.weights = {k: Path(v) for k, v in (w.split("=", 1) for w in args.weights)}
    results = {name: bench_model(name, args) for name in models}
    first = results[models[0]]
    summary = {
        **{k: first[k] for k in TARGETS if k in first},
        "reference_model": models[0], "targets": {k: f"{op} {v:g}" for k, (op, v) in TARGETS.items()},
        "models": results, "size": args.size, "repeats": args.repeats, **environment(),
    }
    write_results(summary, args.out, table(results), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
