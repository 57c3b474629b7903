"""Load: K concurrent sessions on one shared model against the same requests one by one.

    python bench/load.py [--sessions 4] [--requests 40] [--modality xray]
                         [--methods gradcam,hirescam,haycam_plus] [--target CLASS] [--rounds 3]
                         [--threads N] [--weights-dir DIR] [--data DIR] [--json] [--out bench/results/load.json]

A request is what the Predict page does with an upload: ``imaging.load_image`` on the file's
bytes, ``xai.explain_loaded`` with the chosen methods (the page's defaults unless
``--methods``), and one overlay per map. The model is loaded once and shared by all sessions,
as the pages' ``st.cache_resource`` shares it between browser sessions. Images: the model
card's test split under ``--data`` (default ``$MEDXAI_DATA`` or ``shared/data`` beside the
repository), spread evenly over it; generated images, noted in the JSON, when it is absent.

Each round runs the R requests one after another in one thread (the baseline), then the same
R requests from K session threads that each take the next request when done; per mode the
round with the highest throughput is reported (``--rounds``, interleaved so that other load on
a shared machine hits both modes): throughput, latency p50 / p95 / max, errors, and the largest
difference of any map or probability from the baseline's answer to the same request. Prints a
table, writes JSON.
"""

from __future__ import annotations

import argparse
import io
import queue
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, write_results  # noqa: E402
from imaging import MODALITIES, load_image  # noqa: E402
from models.card import ModelCard  # noqa: E402
from models.registry import LoadedModel, load_for_modality  # noqa: E402
from tests.conftest import shared_data_root  # noqa: E402
from xai import DEFAULT_METHODS, Explanation, explain_loaded, resolve_methods  # noqa: E402
from xai.overlay import overlay  # noqa: E402

TOLERANCE = 1e-5
GENERATED_SIZE = 256


@dataclass(frozen=True)
class Upload:
    """An uploaded file: its name and bytes."""

    name: str
    data: bytes


@dataclass
class Run:
    """Per-request latency (ms), answer or error, and which session served it."""

    sessions: int
    wall_s: float = 0.0
    latency_ms: dict[int, float] = field(default_factory=dict)
    answers: dict[int, Explanation] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    served_by: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        """Counts, wall time, throughput and latency percentiles, as written to the JSON."""
        latencies = np.array(list(self.latency_ms.values()))
        per_session = [sum(1 for s in self.served_by.values() if s == k) for k in range(self.sessions)]
        return {
            "sessions": self.sessions, "requests": len(self.served_by),
            "completed": len(self.answers), "errors": len(self.errors), "per_session": per_session,
            "wall_s": self.wall_s, "throughput_rps": len(self.answers) / self.wall_s,
            "latency_ms": {"p50": float(np.percentile(latencies, 50)),
                           "p95": float(np.percentile(latencies, 95)),
                           "max": float(latencies.max()), "mean": float(latencies.mean())},
        }


def card_test_images(card: ModelCard, data_root: Path | None, count: int) -> list[Path]:
    """Up to ``count`` files of the card's test split, evenly spread (so over every class)."""
    source, files = card.data.get("source"), card.split.get("test_files") or []
    if data_root is None or not source or not files:
        return []
    source_path = Path(source)  # e.g. ../shared/data/<set> or ../shared/data/<set>/SOURCES.csv
    folder = data_root / (source_path.parent.name if source_path.suffix else source_path.name)
    paths = [folder / name for name in files if (folder / name).is_file()]
    return [paths[i * len(paths) // count] for i in range(min(count, len(paths)))]


def generated_uploads(count: int) -> list[Upload]:
    """``count`` seeded noise-and-gradient PNGs, for machines without the shared data."""
    ramp = np.linspace(0, 160, GENERATED_SIZE)[None, :, None]
    uploads = []
    for i in range(count):
        noise = np.random.default_rng(i).normal(60, 30, (GENERATED_SIZE, GENERATED_SIZE, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(noise + ramp, 0, 255).astype(np.uint8)).save(buffer, "PNG")
        uploads.append(Upload(f"generated{i}.png", buffer.getvalue()))
    return uploads


def handle(loaded: LoadedModel, upload: Upload, methods: list[str], target: str | None) -> Explanation:
    """The Predict page's work for one upload: decode, explain, draw each overlay."""
    rgb = load_image(upload.data, name=upload.name).rgb
    explanation = explain_loaded(loaded, rgb, methods=methods, target=target)
    for cam in explanation.maps.values():
        overlay(explanation.image, cam)
    return explanation


def run(loaded: LoadedModel, uploads: list[Upload], requests: int, sessions: int,
        methods: list[str], target: str | None) -> Run:
    """``requests`` requests (uploads in turn) served by ``sessions`` threads started together."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(requests):
        todo.put(i)
    result = Run(sessions)
    barrier = threading.Barrier(sessions + 1)

    def session(k: int) -> None:
        barrier.wait()
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            start = time.perf_counter()
            try:
                result.answers[i] = handle(loaded, uploads[i % len(uploads)], methods, target)
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
                result.errors[i] = f"{type(exc).__name__}: {exc}"
            result.latency_ms[i] = (time.perf_counter() - start) * 1000
            result.served_by[i] = k

    threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    result.wall_s = time.perf_counter() - start
    return result


def best_round(runs: list[Run]) -> dict[str, object]:
    """The summary of the round with the highest throughput, plus every round's throughput and
    the errors of all rounds."""
    throughputs = [len(r.answers) / r.wall_s for r in runs]
    best = runs[throughputs.index(max(throughputs))]
    return {**best.summary(), "throughput_rps_rounds": throughputs,
            "errors_all_rounds": sum(len(r.errors) for r in runs)}


def compare_answers(concurrent: Run, sequential: Run) -> tuple[float, int]:
    """Largest |difference| of maps and probabilities, and requests whose label or maps differ."""
    worst, mismatches = 0.0, 0
    for i, got in concurrent.answers.items():
        ref = sequential.answers.get(i)
        if ref is None:
            continue
        diff = max([float(np.abs(got.probabilities - ref.probabilities).max())]
                   + [float(np.abs(cam.map - ref.maps[name].map).max())
                      for name, cam in got.maps.items()])
        worst = max(worst, diff)
        mismatches += got.label != ref.label or diff > TOLERANCE
    return worst, mismatches


def table(summary: dict[str, object]) -> str:
    """The two modes side by side, then the ratio and the agreement."""
    lines = [f"{'mode':<12}{'sessions':>9}{'requests':>9}{'errors':>7}{'req/s':>8}"
             f"{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"]
    for mode in ("sequential", "concurrent"):
        s = summary[mode]
        assert isinstance(s, dict)
        lat = s["latency_ms"]
        lines.append(f"{mode:<12}{s['sessions']:>9}{s['requests']:>9}{s['errors_all_rounds']:>7}"
                     f"{s['throughput_rps']:>8.2f}{lat['p50']:>9.0f}{lat['p95']:>9.0f}"
                     f"{lat['max']:>9.0f}")
    lines.append(f"best of {summary['rounds']} interleaved rounds per mode; errors over all "
                 "rounds")
    lines.append(f"concurrency ratio (throughput concurrent / sequential): "
                 f"{summary['concurrency_ratio']:.2f}; answers vs sequential: max |diff| "
                 f"{summary['max_abs_diff_vs_sequential']:.1e}, "
                 f"{summary['mismatches']} mismatching")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; 0 when no request failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions (threads)")
    parser.add_argument("--requests", type=int, default=40, help="requests in total")
    parser.add_argument("--modality", default="xray", choices=MODALITIES)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="comma-separated methods or groups (default: the Predict page's)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of both modes; each mode's fastest is kept")
    parser.add_argument("--target", help="class to explain (default: the predicted class)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--weights-dir", type=Path, help="model registry (default: weights/)")
    parser.add_argument("--data", type=Path, default=shared_data_root(),
                        help="shared data folder (default: $MEDXAI_DATA or shared/data)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    parser.add_argument("--json", action="store_true", help="also print the JSON")
    args = parser.parse_args(argv)
    if min(args.sessions, args.requests, args.rounds) < 1:
        parser.error("--sessions, --requests and --rounds must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_for_modality(args.modality, args.weights_dir)
    methods = resolve_methods(args.methods, loaded.arch.stage_layers)
    paths = card_test_images(loaded.card, args.data, args.requests)
    if paths:
        uploads = [Upload(p.name, p.read_bytes()) for p in paths]
        source = f"test split of {loaded.card.name} under {args.data}"
    else:
        uploads = generated_uploads(min(args.requests, 8))
        source = "generated"
        print(f"note: no test images of {loaded.card.name} found (data: {args.data}); "
              f"using {len(uploads)} generated images")

    handle(loaded, uploads[0], methods, args.target)  # warm-up, not timed
    sequential_runs, concurrent_runs = [], []
    for _ in range(args.rounds):  # interleaved, so that other load on the machine hits both
        sequential_runs.append(run(loaded, uploads, args.requests, 1, methods, args.target))
        concurrent_runs.append(run(loaded, uploads, args.requests, args.sessions, methods,
                                   args.target))
    seq, conc = best_round(sequential_runs), best_round(concurrent_runs)
    worst, mismatches = 0.0, 0
    for concurrent in concurrent_runs:
        diff, wrong = compare_answers(concurrent, sequential_runs[0])
        worst, mismatches = max(worst, diff), mismatches + wrong
    all_runs = sequential_runs + concurrent_runs
    summary = {
        "modality": args.modality, "model": loaded.card.name, "arch": loaded.card.arch,
        "input_size": loaded.card.input_size, "methods": methods, "target": args.target,
        "images": {"source": source, "count": len(uploads)},
        "sequential": seq, "concurrent": conc,
        "concurrency_ratio": conc["throughput_rps"] / seq["throughput_rps"],
        "max_abs_diff_vs_sequential": worst, "mismatches": mismatches,
        "rounds": args.rounds,
        "error_messages": sorted({m for r in all_runs for m in r.errors.values()})[:5],
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **environment(),
    }
    write_results(summary, args.out, table(summary), args.json)
    return 0 if not any(r.errors for r in all_runs) else 1


if __name__ == "__main__":
    sys.exit(main())
