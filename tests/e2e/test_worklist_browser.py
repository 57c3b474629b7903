"""End to end: a worklist of five files (three MRIs and a .zip of two X-rays) in a real browser
with the shipped models: the table fills, the CSV downloads with base names only, a row opens
in the viewer, and a prior/current pair shares one zoom."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from tests.e2e.conftest import ARTIFACTS

PAIR = '.js-plotly-plot:has(text.annotation-text:text-matches("^Prior"))'
LAST_PLOT = "[...document.querySelectorAll('.js-plotly-plot')].pop()._fullLayout"  # the pair
RANGES = f"""() => {{ const layout = {LAST_PLOT};
    return Object.keys(layout).filter(k => /^xaxis\\d*$/.test(k))
        .map(k => layout[k].range.map(Math.round).join(',')); }}"""


def test_a_worklist_fills_exports_and_opens_rows(page, shipped_server: str, shared_data: Path,
                                                 tmp_path: Path) -> None:
    mris = sorted((shared_data / "brain-tumor-mri" / "glioma").glob("*.jpg"))[:3]
    xrays = sorted((shared_data / "chest-xray-pneumonia" / "normal").glob("*.jpg"))[:2]
    archive = tmp_path / "xrays.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in xrays:
            bundle.write(path, f"exports/study/{path.name}")
    page.goto(f"{shipped_server}/Worklist")
    page.get_by_text("Upload several images").wait_for()
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [*map(str, mris), str(archive)])
    page.get_by_text("5 files, 5 with a label").wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "worklist.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("button", name="Worklist (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["file"] for r in rows] == [p.name for p in [*mris, *xrays]]  # base names only
    assert [r["modality"] for r in rows] == ["mri"] * 3 + ["xray"] * 2
    assert all(r["label"] in ("glioma", "normal") or r["warnings"] for r in rows)

    grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    page.mouse.click(grid["x"] + 15, grid["y"] + 35 * 2.5)  # the second row's marker
    page.get_by_text(f"{mris[1].name}: ").wait_for()
    figures = page.get_by_text("Model mri-lite0. Test accuracy").inner_text()
    assert "95% CI" in figures and "n=" in figures and "linear-probe baseline" in figures
    viewer = '.js-plotly-plot:has(text.annotation-text:text-matches("^Grad-CAM"))'
    page.locator(f"{viewer} g.imagelayer image").nth(3).wait_for(state="attached")

    page.locator(f"{PAIR} g.imagelayer image").nth(3).wait_for(state="attached")
    box = page.locator(f"{PAIR} .nsewdrag").nth(3).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.7, steps=6)
    page.mouse.up()
    page.wait_for_function(f"() => {LAST_PLOT}.xaxis.range[0] > 20")
    assert len(set(page.evaluate(RANGES))) == 1  # prior and current zoomed together
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "worklist-viewer-and-pair.png"), full_page=True)
