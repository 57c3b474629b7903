"""End to end: three browser sessions on ONE real server predict three X-rays at once.

Each session is its own browser context (own cookies, own Streamlit session); all three upload
and then press Predict back to back, so the server runs their scripts side by side on its one
cached model. Each page must show the label and confidence ``models.predict`` gives for the
image that session uploaded. Three sessions, not eight: the server and Chromium share the two
CPU cores of the test machines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging import load_path
from models.predict import predict
from models.registry import load_for_modality

XRAY_SET = "chest-xray-pneumonia"


@pytest.fixture
def sessions(browser) -> Iterator[list]:
    """Three pages, each in its own browser context."""
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1600}) for _ in range(3)]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        page.set_default_timeout(180_000)
    yield pages
    for context in contexts:
        context.close()


def test_three_sessions_each_see_their_own_prediction(sessions, shipped_server: str,
                                                      shared_data: Path) -> None:
    folder = shared_data / XRAY_SET
    loaded = load_for_modality("xray")
    images, shown = [], []  # two normals and a pneumonia whose pages must all differ
    for path in [*sorted((folder / "normal").glob("*.jpg"))[:8],
                 *sorted((folder / "pneumonia").glob("*.jpg"))[:8]]:
        result = predict(loaded, load_path(path).rgb)
        text = (result.label, f"{result.confidence:.1%}")
        if text not in shown and len(images) < (2 if path.parent.name == "normal" else 3):
            images.append(path)
            shown.append(text)
    assert len(shown) == 3  # a session showing another's result cannot pass

    for page, image in zip(sessions, images, strict=True):
        page.goto(f"{shipped_server}/Predict")
        page.get_by_text("Upload an image to start.").wait_for()
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
            str(image))
    for page in sessions:
        page.get_by_role("combobox", name="Modality").click()
        page.get_by_role("option", name="X-ray", exact=True).click()
        page.get_by_role("button", name="Predict").wait_for()
    for page in sessions:  # back to back: the three runs overlap on the server
        page.get_by_role("button", name="Predict").click()

    for page, (label, confidence) in zip(sessions, shown, strict=True):
        value = page.locator('[data-testid="stMetricValue"]')
        value.wait_for()
        assert value.inner_text().strip() == label
        assert page.locator('[data-testid="stMetricDelta"]').inner_text().strip() == (
            f"{confidence} confidence")
        for method in ("Grad-CAM", "HiResCAM", "HayCAM+"):
            page.get_by_text(f"{method} - ", exact=False).first.wait_for()
        assert page.locator('[data-testid="stException"]').count() == 0
