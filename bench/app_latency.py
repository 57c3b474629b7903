"""In a real browser: time from upload to the last overlay on the Predict and Compare pages.

Starts ``streamlit run app.py`` on the models in ``weights/`` (or ``--weights``), drives Debian's
Chromium through Playwright, and times, for one real image: Predict with the three default
methods (the first run includes loading the model; the target is the warm runs), and Compare
with every method (fast Score-CAM). Prints a table and writes ``bench/results/app_latency.json``.

    python bench/app_latency.py [--modality xray] [--image PATH] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import shared_data_root  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_FLAGS, running_app  # noqa: E402

DEFAULT_IMAGES = {"xray": "chest-xray-pneumonia/pneumonia", "endoscopy": "wce-bleeding/bleeding",
                  "mri": "brain-tumor-mri/glioma", "histology": "lc25000-lung/lung_aca"}
TARGET_PREDICT_S = 2.0


def _time_page(page, url: str, image: Path, button: str, done) -> float:
    """Seconds from choosing the file to ``done(page)`` returning after the button press."""
    page.goto(url)
    page.locator('[data-testid="stFileUploader"]').first.wait_for()
    start = time.perf_counter()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
        str(image))
    page.get_by_role("button", name=button).click()
    done(page)
    return time.perf_counter() - start


def _overlays_rendered(count: int, marker: str):
    def done(page) -> None:
        images = page.locator('[data-testid="stImage"]').filter(has_text=marker)
        images.nth(count - 1).wait_for()
        page.wait_for_function(
            """([marker, count]) => [...document.querySelectorAll('[data-testid="stImage"]')]
                 .filter(e => e.innerText.includes(marker))
                 .filter(e => { const i = e.querySelector('img'); return i && i.complete && i.naturalWidth > 0; })
                 .length >= count""", arg=[marker, count])
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modality", default="xray", choices=sorted(DEFAULT_IMAGES))
    parser.add_argument("--image", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", type=Path, help="registry folder (default: weights/)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    image = args.image
    if image is None:
        root = shared_data_root()
        if root is None:
            parser.error("no --image and no shared data found")
        image = sorted((root / DEFAULT_IMAGES[args.modality]).glob("*.jpg"))[0]
    with running_app(args.weights) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.set_default_timeout(600_000)
        predict = [_time_page(page, f"{url}/Predict", image, "Predict",
                              _overlays_rendered(3, " ms")) for _ in range(args.repeats + 1)]
        compare = [_time_page(page, f"{url}/Compare", image, "Run all methods",
                              _overlays_rendered(1, "Every method")) for _ in range(args.repeats)]
        browser.close()
    warm = statistics.median(predict[1:])
    result = {
        "modality": args.modality, "image": image.name, "repeats": args.repeats,
        "predict_first_s": predict[0], "predict_warm_median_s": warm, "predict_runs_s": predict,
        "compare_median_s": statistics.median(compare), "compare_runs_s": compare,
        "target_predict_warm_s": TARGET_PREDICT_S, "meets_target": warm <= TARGET_PREDICT_S,
    }
    print(f"{'measure':<36}{'seconds':>10}")
    print(f"{'Predict, 3 methods, first (cold)':<36}{predict[0]:>10.2f}")
    print(f"{'Predict, 3 methods, warm median':<36}{warm:>10.2f}   target <= {TARGET_PREDICT_S}")
    print(f"{'Compare, all methods, median':<36}{result['compare_median_s']:>10.2f}")
    out = REPO / "bench" / "results" / "app_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
