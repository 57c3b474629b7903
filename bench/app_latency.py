"""In a real browser: how long a clinician waits on the Predict page, against the targets.

Starts ``streamlit run app.py`` on the models in ``weights/`` (or ``--weights``), drives Debian's
Chromium through Playwright on real images of one modality (automatic routing), and times:

* server start -> first prediction: from launching the server to the last overlay drawn after
  the first Predict click (page load, upload, router and model loading included);
* warm Predict click -> last overlay: a new image each time (its maps are not cached), median;
* opacity change (one view's slider) and colour-map change (every view, from the sidebar):
  from the input to the changed overlays drawn, medians.

The baseline, measured in the same run without a browser, is the server-side work of a click:
routing, prediction and three maps of the same images plus rendering their panels. Prints a
table, writes ``bench/results/app_latency.json``. The machine may be shared: note its load.

    python bench/app_latency.py [--modality mri] [--repeats 5] [--weights DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import environment, write_results  # noqa: E402
from tests.conftest import shared_data_root  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_FLAGS, running_app  # noqa: E402

DEFAULT_IMAGES = {"xray": "chest-xray-pneumonia/pneumonia", "endoscopy": "wce-bleeding/bleeding",
                  "mri": "brain-tumor-mri/glioma", "histology": "lc25000-lung/lung_aca"}
TARGETS_S = {"start_to_first_prediction": 4.0, "predict_warm": 0.4, "opacity_change": 0.25,
             "colormap_change": 0.25}
METHODS = ["gradcam", "hirescam", "haycam_plus"]  # the Predict page's defaults
VIEWER = ".js-plotly-plot:has(g.imagelayer image)"
PANELS = 1 + len(METHODS)
# Each picture of the viewer, told apart by its data URI's length and tail.
SIGNATURE = "(n => { const h = n.getAttribute('href') || ''; return h.length + ':' + h.slice(-64); })"
HREFS = f"""() => [...document.querySelectorAll('{VIEWER} g.imagelayer image')].map({SIGNATURE})"""


def _drawn(page, before: list[str] | None = None, changed: int = 1) -> None:
    """Wait until the viewer shows all panels, at least ``changed`` of them different from
    ``before``, and the browser has painted them."""
    page.wait_for_function(
        f"""([panels, before, changed]) => {{
            const hrefs = [...document.querySelectorAll('{VIEWER} g.imagelayer image')]
                .map({SIGNATURE});
            if (hrefs.length < panels || hrefs.some(h => h.startsWith('0:'))) return false;
            return before === null || hrefs.filter((h, i) => h !== before[i]).length >= changed;
        }}""", arg=[PANELS, before, changed], polling="raf")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => "
                  "requestAnimationFrame(done)))")


def _upload(page, image: Path) -> None:
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
        str(image))
    page.get_by_text("Press Predict to run the model on this image.").wait_for()


def _click_predict(page) -> float:
    start = time.perf_counter()
    page.get_by_role("button", name="Predict").click()
    _drawn(page)
    return time.perf_counter() - start


def _browser_rows(weights: Path | None, images: list[Path]) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.set_default_timeout(600_000)
        start = time.perf_counter()
        with running_app(weights) as url:
            page.goto(f"{url}/Predict")
            _upload(page, images[0])
            _click_predict(page)
            first = time.perf_counter() - start
            warm, opacity, colormap = [], [], []
            for i, image in enumerate(images[1:]):
                _upload(page, image)
                warm.append(_click_predict(page))
                before = page.evaluate(HREFS)
                thumb = page.get_by_role("slider", name="Grad-CAM: opacity")
                thumb.focus()
                t0 = time.perf_counter()
                thumb.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
                _drawn(page, before, changed=1)
                opacity.append(time.perf_counter() - t0)
                before = page.evaluate(HREFS)
                page.get_by_role("combobox", name="Colour map, every view").click()
                option = ("cividis (colour-blind safe)", "turbo")[i % 2]
                t0 = time.perf_counter()
                page.get_by_role("option", name=option, exact=True).click()
                _drawn(page, before, changed=len(METHODS))
                colormap.append(time.perf_counter() - t0)
        browser.close()
    return {"start_to_first_prediction": [first], "predict_warm": warm,
            "opacity_change": opacity, "colormap_change": colormap}


def _baseline(weights: Path | None, images: list[Path]) -> list[float]:
    """Seconds of server-side work per click: load, route, predict, three maps, panels."""
    from imaging import load_path
    from models.predict import predict
    from models.route import route_and_load
    from xai.viewer import ORIGINAL, MapCache

    times = []
    cache = MapCache()
    for i, path in enumerate([images[0], *images]):  # the first run warms the models up
        start = time.perf_counter()
        image = load_path(path)
        _, loaded = route_and_load(image, None, weights)
        prediction = predict(loaded, image.rgb)
        explanations = cache.explain(loaded, str(i), image.rgb, METHODS, [prediction.index])
        cache.panels(loaded, str(i), image.rgb, explanations, {}, mode=ORIGINAL, outline=False,
                     max_side=1024)
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modality", default="mri", choices=sorted(DEFAULT_IMAGES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--weights", type=Path, help="registry folder (default: weights/)")
    parser.add_argument("--json", action="store_true", help="also print the JSON")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "app_latency.json")
    args = parser.parse_args()
    root = shared_data_root()
    if root is None:
        parser.error("no shared data found (set MEDXAI_DATA)")
    images = sorted((root / DEFAULT_IMAGES[args.modality]).glob("*.jpg"))[:args.repeats + 1]
    load_before = os.getloadavg()[0]
    runs = _browser_rows(args.weights, images)
    baseline = statistics.median(_baseline(args.weights, images[1:]))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    lines = [f"{'measure (real browser, ' + args.modality + ')':<44}{'seconds':>9}"
             f"{'target':>9}{'met':>6}{'x baseline':>12}"]
    for name, value in medians.items():
        target = TARGETS_S[name]
        lines.append(f"{name.replace('_', ' '):<44}{value:>9.2f}{target:>9.2f}"
                     f"{'yes' if value <= target else 'NO':>6}{value / baseline:>12.1f}")
    lines.append(f"{'baseline: server-side work of one click':<44}{baseline:>9.3f}")
    lines.append(f"load average before the run: {load_before:.2f} on {os.cpu_count()} CPUs")
    summary = {
        "modality": args.modality, "images": [p.name for p in images], "repeats": args.repeats,
        "environment": environment(), "load_average_before": load_before,
        "baseline_server_work_s": baseline, "median_s": medians, "runs_s": runs,
        "targets_s": TARGETS_S, "met": {k: medians[k] <= TARGETS_S[k] for k in medians},
    }
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
