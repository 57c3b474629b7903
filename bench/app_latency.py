"""In a real browser: how long a clinician waits, against the targets of the viewer issue.

Starts ``streamlit run app.py`` on the models in ``weights/`` (or ``--weights``), drives Debian's
Chromium through Playwright on real images (automatic routing), and times:

* server start -> first prediction: from launching the server to the last overlay drawn after
  the first Predict click (page load, upload, router and model loading included);
* warm Predict click -> last overlay: a new image each time (its maps are not cached), median;
* opacity change (one view's slider) and colour-map change (every view, from the sidebar):
  from the input to the changed overlays drawn, medians;
* a 20-image worklist (5 per modality) from choosing the files to the filled table, once with
  the other modalities' models still to load and once more, in a new session, with all loaded.

Each row has a baseline measured in the same run without a browser or server: the same work
called directly (a fresh Python process importing, loading and predicting; predict + maps +
panels; re-rendering one or three panels and the figure; ``read_worklist`` on the same files).
The ratio is what the server and the browser add. Prints a table, writes
``bench/results/app_latency.json``. The machine may be shared: the load average is recorded.

    python bench/app_latency.py [--modality mri] [--repeats 5] [--weights DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
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
             "colormap_change": 0.25, "worklist_20": 10.0}
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


def _worklist(page, url: str, files: list[Path]) -> float:
    page.goto(f"{url}/Worklist")
    page.get_by_text("Upload several images").wait_for()
    start = time.perf_counter()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(f) for f in files])
    page.get_by_text(f"{len(files)} files, ").wait_for()
    page.locator('[data-testid="stDataFrame"]').first.wait_for()
    return time.perf_counter() - start


def _browser_rows(weights: Path | None, images: list[Path],
                  worklists: list[list[Path]]) -> dict[str, list[float]]:
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
            worklist = [_worklist(browser.new_page(), url, files) for files in worklists]
        browser.close()
    return {"start_to_first_prediction": [first], "predict_warm": warm,
            "opacity_change": opacity, "colormap_change": colormap,
            "worklist_20_models_cold": worklist[:1], "worklist_20": worklist[1:]}


COLD_START = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, {repo!r})
from imaging import load_path
from models.predict import predict
from models.route import route_and_load
from xai.viewer import ORIGINAL, MapCache, linked_figure
image = load_path({image!r})
_, loaded = route_and_load(image, None, {weights!r})
prediction = predict(loaded, image.rgb)
cache = MapCache()
explanations = cache.explain(loaded, "k", image.rgb, {methods!r}, [prediction.index], prediction)
linked_figure(*cache.panels(loaded, "k", image.rgb, explanations, {{}}, mode=ORIGINAL,
                            outline=False, max_side=1024))
print(time.perf_counter() - start)
"""


def _baselines(weights: Path | None, images: list[Path],
               worklists: list[list[Path]]) -> dict[str, list[float]]:
    """The rows' work without server or browser (see the module docstring)."""
    from imaging import load_path
    from imaging.archive import NamedFile
    from models.predict import predict
    from models.registry import LoadedModel, load_for_modality
    from models.route import load_router, route_and_load
    from models.worklist import read_worklist
    from xai.viewer import ORIGINAL, MapCache, Style, data_uri, linked_figure

    code = COLD_START.format(repo=str(REPO), image=str(images[0]), methods=METHODS,
                             weights=None if weights is None else str(weights))
    started = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    cold = [time.perf_counter() - started]
    assert float(output.strip()) > 0
    click, one, three = [], [], []
    cache = MapCache()
    _, loaded = route_and_load(load_path(images[0]), None, weights)  # the pages cache models
    for i, path in enumerate([images[0], *images[1:]]):  # the first run warms up
        image = load_path(path)
        t0 = time.perf_counter()
        view, _ = cache.view(loaded, str(i), image.rgb)
        prediction = predict(loaded, image.rgb, view=view)
        explanations = cache.explain(loaded, str(i), image.rgb, METHODS, [prediction.index],
                                     prediction)
        options = dict(mode=ORIGINAL, outline=False, max_side=1024)
        linked_figure(*cache.panels(loaded, str(i), image.rgb, explanations, {}, **options))
        t1 = time.perf_counter()
        styles = {"gradcam": Style(alpha=0.5)}
        linked_figure(*cache.panels(loaded, str(i), image.rgb, explanations, styles, **options))
        t2 = time.perf_counter()
        styles = dict.fromkeys(METHODS, Style("cividis"))
        linked_figure(*cache.panels(loaded, str(i), image.rgb, explanations, styles, **options))
        t3 = time.perf_counter()
        if i:
            click.append(t1 - t0)
            one.append(t2 - t1)
            three.append(t3 - t2)
    router = load_router(weights)
    models = {(m, None): load_for_modality(m, weights) for m in DEFAULT_IMAGES}

    def model_for(modality: str, task: str | None) -> LoadedModel:
        """The pages' cached models: a routed task's model is loaded on first use."""
        if (modality, task) not in models:
            models[modality, task] = load_for_modality(modality, weights, task=task)
        return models[modality, task]

    thumbnails = MapCache()
    worklist = []
    for files in worklists:
        t0 = time.perf_counter()
        named = [NamedFile(f.name, f.read_bytes()) for f in files]
        for item in read_worklist(named, router, model_for):
            data_uri(thumbnails.thumbnail(item.digest, item.image.rgb, 96))
        worklist.append(time.perf_counter() - t0)
    return {"start_to_first_prediction": cold, "predict_warm": click, "opacity_change": one,
            "colormap_change": three, "worklist_20_models_cold": worklist[:1],
            "worklist_20": worklist[1:]}


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
    folders = {m: sorted((root / folder).glob("*.jpg")) for m, folder in DEFAULT_IMAGES.items()}
    worklists = [[p for files in folders.values() for p in files[50 + 5 * run:55 + 5 * run]]
                 for run in range(2)]  # 5 per modality, other files in each run
    load_before = os.getloadavg()[0]
    runs = _browser_rows(args.weights, images, worklists)
    baselines = _baselines(args.weights, images, worklists)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    base = {name: statistics.median(values) for name, values in baselines.items()}
    lines = [f"{'measure (real browser; ' + args.modality + ' images)':<40}{'seconds':>9}"
             f"{'target':>9}{'met':>6}{'baseline':>10}{'ratio':>8}"]
    for name, value in medians.items():
        target = TARGETS_S.get(name)
        lines.append(f"{name.replace('_', ' '):<40}{value:>9.2f}"
                     + (f"{target:>9.2f}{'yes' if value <= target else 'NO':>6}" if target
                        else f"{'-':>9}{'-':>6}")
                     + f"{base[name]:>10.3f}{value / base[name]:>8.1f}")
    lines.append(f"load average before the run: {load_before:.2f} on {os.cpu_count()} CPUs "
                 f"(after: {os.getloadavg()[0]:.2f})")
    summary = {
        "modality": args.modality, "images": [p.name for p in images], "repeats": args.repeats,
        "environment": environment(), "load_average_before": load_before,
        "median_s": medians, "baseline_median_s": base, "runs_s": runs,
        "baseline_runs_s": baselines, "targets_s": TARGETS_S,
        "met": {k: medians[k] <= TARGETS_S[k] for k in TARGETS_S},
    }
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
