from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_readme_command_serves_the_app(weights_env: Path) -> None:
    """`streamlit run app.py` starts and its health endpoint answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=REPO, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.status == 200 and r.read() == b"ok"
                    break
            except OSError:
                assert proc.poll() is None, "streamlit exited early"
                assert time.monotonic() < deadline, "health endpoint did not answer in 90 s"
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
