from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from models.card import TASKS
from tests.conftest import register_tiny_colonoscopy, register_tiny_model
from tests.e2e.conftest import running_app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def weights_env(monkeypatch: pytest.MonkeyPatch, tiny_registry: Path) -> Path:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tiny_registry))
    return tiny_registry


def _home() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    return at.run()


def test_home_lists_installed_models_and_says_what_is_missing(weights_env: Path) -> None:
    at = _home()
    assert not at.exception
    assert any("not a diagnosis" in w.value for w in at.warning)
    table = at.table[0].value
    status = dict(zip(table["modality"], table["status"], strict=True))
    assert status["mri"] == "ready" and status["xray"] == "ready"
    assert status["histology"] == "no model installed"
    assert "tiny-mri-resnet18" in set(table["model"])
    assert any("--modality histology --task lung-cancer" in c.value for c in at.caption)


def test_home_with_empty_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tmp_path))
    at = _home()
    assert not at.exception
    assert set(at.table[0].value["status"]) == {"no model installed"}


def test_readme_command_serves_the_app(tiny_registry: Path) -> None:
    """`streamlit run app.py` starts, its health endpoint answers and it serves the page."""
    with running_app(tiny_registry, timeout=90) as url, \
            urllib.request.urlopen(f"{url}/", timeout=10) as response:
        assert response.status == 200 and b"<html" in response.read().lower()


def test_home_table_shows_every_column(weights_env: Path) -> None:
    """A static table: no column hidden behind a horizontal scrollbar, long text wrapped."""
    at = _home()
    assert not at.dataframe
    assert list(at.table[0].value.columns) == [
        "modality", "task", "model", "architecture", "classes", "test accuracy", "95% CI", "test n",
        "external", "linear probe", "data", "status"]


def test_home_lists_every_modality_and_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One row per (modality, task): a colonoscopy model is listed beside a capsule task that
    has none."""
    register_tiny_colonoscopy(tmp_path)
    register_tiny_model(tmp_path, "mri")
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tmp_path))
    at = _home()
    assert not at.exception
    table = at.table[0].value
    assert list(zip(table["modality"], table["task"], strict=True)) == [
        (spec.modality, spec.title) for spec in TASKS.values()]
    status = dict(zip(table["task"], zip(table["model"], table["status"], strict=True),
                      strict=True))
    assert status["colonoscopy for polyps"] == ("colonoscopy-tiny", "ready")
    assert status["capsule endoscopy for bleeding"] == ("-", "no model installed")
    assert status["brain MRI for tumours"] == ("tiny-mri-resnet18", "ready")
