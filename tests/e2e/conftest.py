"""A real Streamlit server and a real Chromium for the end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from models.card import ModelCard

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MEDXAI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll Streamlit's health endpoint until it answers ``ok``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("streamlit exited before answering")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {timeout} s")
        time.sleep(0.5)


@contextlib.contextmanager
def running_app(
    weights_dir: Path | None = None,
    timeout: float = 120,
    *,
    script: str | Path = "app.py",
    output: Path | None = None,
    prelude: str = "",
    env: Mapping[str, str] | None = None,
    flags: Sequence[str] = (),
) -> Iterator[str]:
    """``streamlit run script`` (the README command) from the repository root on a free
    loopback port; yields its URL.

    ``weights_dir`` sets ``MEDXAI_WEIGHTS_DIR``; the server's stdout and stderr go to ``output``
    (complete once the block exits) or are discarded; ``prelude`` is Python run in the server
    process before Streamlit starts. The server is stopped by its PID on exit.
    """
    port = free_port()
    environment = {**os.environ, **(env or {}),
                   **({"MEDXAI_WEIGHTS_DIR": str(weights_dir)} if weights_dir else {})}
    code = f"{prelude}\nfrom streamlit.web.cli import main\nmain()\n"
    command = [sys.executable, "-c", code, "run", str(script), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), *flags]
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(output.open("wb")) if output else subprocess.DEVNULL
        proc = subprocess.Popen(command, cwd=REPO, env=environment, stdout=sink,
                                stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_health(url, proc, timeout)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def streamlit_server(tiny_registry: Path) -> Iterator[str]:
    """The app on a free loopback port, serving the tiny test models."""
    with running_app(tiny_registry) as url:
        yield url


@pytest.fixture(scope="session")
def shipped_server() -> Iterator[str]:
    """The app serving the shipped models (and router) of ``weights/``."""
    from models.registry import registry_status

    missing = [m for m, entry in registry_status().items() if not isinstance(entry, ModelCard)]
    if missing:
        pytest.skip(f"no shipped model for {', '.join(missing)} in weights/")
    with running_app() as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright; skips where either is missing."""
    if not Path(CHROMIUM).exists():
        reason = "Chromium not found: apt-get install chromium (or set MEDXAI_CHROMIUM)"
        if os.environ.get("CI"):  # .ci/run installs it: a missing browser is a CI failure
            pytest.fail(reason)
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser page (own session) at a desktop size."""
    # Tall viewport: Streamlit scrolls its main block, so a full-page shot shows only the viewport.
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    page = context.new_page()
    page.set_default_timeout(120_000)
    yield page
    context.close()
