"""End to end: the Compare page ranks every method on a real bleeding frame with its mask, every
row of its tables visible; the Models page reads as words (shipped models, a real browser)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import ARTIFACTS

ROW_PX = 30  # a Streamlit dataframe row is 35 px; a table cut at ten rows is far shorter


def _table_fits(table) -> None:
    """Every row of a dataframe is on screen: no inner scrollbar hides a method."""
    rows = int(table.locator('[role="grid"]').first.get_attribute("aria-rowcount"))
    height = table.bounding_box()["height"]
    assert rows > 11 and height >= rows * ROW_PX, (rows, height)


def test_compare_ranks_methods_on_a_bleeding_frame(page, shipped_server: str,
                                                   shared_data: Path) -> None:
    frame = sorted((shared_data / "wce-bleeding" / "bleeding").glob("*.jpg"))[0]
    mask = shared_data / "wce-bleeding-masks" / "bleeding" / f"{frame.stem}.png"
    page.goto(f"{shipped_server}/Compare")
    page.get_by_text("Upload an image to compare").wait_for()
    uploads = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploads.first.set_input_files(str(frame))
    page.get_by_text("Modality: endoscopy").wait_for()
    uploads.nth(1).set_input_files(str(mask))
    page.get_by_role("button", name="Run all methods").click()
    page.get_by_text("Localisation against the mask").wait_for()
    page.get_by_text("(ideal 7 x 7 map)").wait_for(state="attached")  # a canvas grid's cell
    page.get_by_text("7 x 7 map, upsampled to 224 x 224").first.wait_for()
    tables = page.locator('[data-testid="stDataFrame"]')
    _table_fits(tables.first)
    page.get_by_role("button", name="Compute deletion / insertion curves").click()
    page.get_by_text("Insertion (higher AUC is better)").wait_for()
    tables.nth(1).wait_for()
    _table_fits(tables.nth(1))
    assert page.locator('[data-testid="stException"]').count() == 0
    page.set_viewport_size({"width": 1400, "height": 4200})  # Streamlit scrolls inside the page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare-bleeding.png"), full_page=True)


def test_models_page_reads_as_words(page, shipped_server: str) -> None:
    page.goto(f"{shipped_server}/Models")
    page.get_by_text("How it was trained").first.wait_for()
    page.get_by_text("Index of balanced accuracy (IBA)").first.wait_for()
    assert page.locator('[data-testid="stJson"]').count() == 0
    assert page.locator('[data-testid="stException"]').count() == 0
    page.set_viewport_size({"width": 1400, "height": 3400})
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)
