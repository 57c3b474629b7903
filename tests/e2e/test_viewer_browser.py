"""End to end: the map viewer in a real browser (shipped models): a 2000 x 2000 upload keeps its
resolution, zooming one panel moves the others, each view renders; the sidebar's page names."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import pytest

from tests.e2e.conftest import ARTIFACTS, running_app

VIEWER = ".js-plotly-plot:has(g.imagelayer image)"
# Ranges of every axis of the viewer, and the natural width of each picture inside it.
RANGES = f"""() => {{
    const layout = document.querySelector('{VIEWER}')._fullLayout;
    return Object.keys(layout).filter(k => /^[xy]axis\\d*$/.test(k)).sort()
        .map(k => [k, layout[k].range.map(v => Math.round(v))]); }}"""
PICTURE_WIDTHS = f"""async () => Promise.all([...document.querySelectorAll('{VIEWER} image')]
    .map(node => new Promise(done => {{
        const picture = new Image();
        picture.onload = () => done(picture.naturalWidth);
        picture.src = node.getAttribute('href');
    }})))"""


def _viewer_ready(page, panels: int, title: str) -> None:
    page.locator(f"{VIEWER} g.imagelayer image").nth(panels - 1).wait_for(state="attached")
    page.locator(f"{VIEWER} text", has_text=title).first.wait_for(state="attached")


def _drag(page, panel: int, start: float, end: float) -> None:
    """A zoom box dragged across ``panel`` from ``start`` to ``end`` (fractions of its side)."""
    box = page.locator(f"{VIEWER} .nsewdrag").nth(panel).bounding_box()
    page.mouse.move(box["x"] + box["width"] * start, box["y"] + box["height"] * start)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end, box["y"] + box["height"] * end, steps=6)
    page.mouse.up()


@pytest.fixture
def big_mri(shared_data: Path, tmp_path: Path) -> Path:
    """A real brain MRI slice enlarged to 2000 x 2000 pixels (in the test's temporary folder)."""
    source = sorted((shared_data / "brain-tumor-mri" / "glioma").glob("*.jpg"))[0]
    path = tmp_path / "mri-2000.png"
    cv2.imwrite(str(path), cv2.resize(cv2.imread(str(source)), (2000, 2000),
                                      interpolation=cv2.INTER_CUBIC))
    return path


def test_the_viewer_keeps_the_uploaded_resolution_and_links_zoom(
    page, shipped_server: str, big_mri: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{shipped_server}/Predict")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
        str(big_mri))
    page.get_by_text("Modality: brain MRI").wait_for()
    page.get_by_role("button", name="Predict").click()
    _viewer_ready(page, 4, "Uploaded, 2000 x 2000 px")
    ranges = page.evaluate(RANGES)
    assert len(ranges) == 8 and {tuple(r) for _, r in ranges} == {(0, 2000), (2000, 0)}
    assert page.evaluate(PICTURE_WIDTHS) == [1024] * 4  # capped for display only
    page.screenshot(path=str(ARTIFACTS / "viewer-original.png"), full_page=True)

    _drag(page, 2, 0.3, 0.6)  # zoom into the second map: every panel follows
    page.wait_for_function(f"() => document.querySelector('{VIEWER}')._fullLayout"
                           ".xaxis.range[1] < 1900")
    zoomed = dict(page.evaluate(RANGES))
    assert len({tuple(v) for k, v in zoomed.items() if k.startswith("x")}) == 1
    assert len({tuple(v) for k, v in zoomed.items() if k.startswith("y")}) == 1
    low, high = zoomed["xaxis"]
    assert 400 < low < high < 1500
    page.screenshot(path=str(ARTIFACTS / "viewer-zoomed.png"), full_page=True)

    page.get_by_text("what the model sees").click()
    _viewer_ready(page, 4, "What the model sees, 224 x 224 px")
    page.screenshot(path=str(ARTIFACTS / "viewer-model-view.png"), full_page=True)
    page.get_by_text("original image").click()
    _viewer_ready(page, 4, "Uploaded, 2000 x 2000 px")

    page.get_by_role("combobox", name="Explain class").click()
    page.get_by_role("option", name="every class (one row each)").click()
    _viewer_ready(page, 13, "pituitary")
    titles = page.locator(f"{VIEWER} .annotation-text").all_text_contents()
    for name in ("glioma", "meningioma", "notumor", "pituitary"):  # a class without positive
        # evidence gets a flat map, and its title says so
        assert any(re.fullmatch(rf"{name} [0-9.]+% - Grad-CAM( \(flat map\))?", t) for t in titles)
    page.get_by_role("combobox", name="HiResCAM: colour map").click()
    page.get_by_role("option", name="cividis (colour-blind safe)").click()
    page.wait_for_timeout(1500)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(ARTIFACTS / "viewer-every-class.png"), full_page=True)


def test_the_sidebar_names_the_pages(page, tiny_registry: Path) -> None:
    """A new server, opened on Predict first: the sidebar reads Home, Predict, Worklist, Compare,
    Models, with no entry named after a file."""
    with running_app(tiny_registry) as url:
        page.goto(f"{url}/Predict")
        page.get_by_text("Upload an image to start.").wait_for()
        # Each link reads "<icon ligature>\n\n<name>".
        names = [text.strip().split("\n")[-1] for text in
                 page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
        assert names == ["Home", "Predict", "Worklist", "Compare", "Models"]
        page.get_by_role("link", name="Models").click()
        page.get_by_role("heading", name="Models").wait_for()
        assert page.url.endswith("/Models")
        page.screenshot(path=str(ARTIFACTS / "navigation.png"))
