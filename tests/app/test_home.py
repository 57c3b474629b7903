from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.e2e.conftest import free_port, wait_for_health

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
    table = at.dataframe[0].value
    status = dict(zip(table["modality"], table["status"], strict=True))
    assert status["mri"] == "ready" and status["xray"] == "ready"
    assert "no model is installed" in status["histology"]
    assert "tiny-mri-resnet18" in set(table["model"])


def test_home_with_empty_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tmp_path))
    at = _home()
    assert not at.exception
    assert all("no model is installed" in s for s in at.dataframe[0].value["status"])


def test_readme_command_serves_the_app(weights_env: Path) -> None:
    """`streamlit run app.py` starts and its health endpoint answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc, timeout=90)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
