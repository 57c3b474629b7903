"""End to end: an upload carrying patient identifiers, through a real server and browser.

Nothing identifying reaches the page (the map viewer's every view and the worklist included),
the downloads (reports, overlays and the worklist CSV, generated on click) or the server's
output (run with
every logger at DEBUG), and the upload is never written to disk: the server process opens no
file for writing while it handles the upload (an audit hook reports every such open, unnamed
temporary files included), and no file that changed under the temp dir or the repository holds
the upload, its digest, its name or an identifier.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset

from models.registry import WEIGHTS_DIR_ENV
from tests.conftest import TINY_CLASSES
from tests.e2e.conftest import REPO, running_app
from tests.imaging.builders import zip_bytes
from tests.reliability.test_patient_data import NEEDLES, PHI, leaked, pdf_text, phi_dicom
from tests.reliability.test_server_config import MIB

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Run in the server process before Streamlit: every logger at DEBUG (pydicom's element dump
# on), and one stderr line per file opened for writing.
AUDIT_PRELUDE = """
import logging, os, sys, tempfile, time
import pydicom
tempfile.gettempdir()  # its one-off probe file is not the app's doing
logging.basicConfig(level=logging.DEBUG)
pydicom.config.debug(True, default_handler=False)
_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
def _report_writes(event, args):
    if event == "open" and isinstance(args[2], int) and args[2] & _WRITING:
        sys.__stderr__.write(f"MEDXAI-AUDIT {time.time():.3f} {args[0]!r}\\n")
sys.addaudithook(_report_writes)
"""
AUDIT_LINE = re.compile(r"^MEDXAI-AUDIT (\d+\.\d+) (.*)$", re.MULTILINE)
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", "node_modules"}
LARGEST_SCANNED = 256 * MIB
UPLOADER = '[data-testid="stFileUploader"]'
# The page's text without the upload widget, which shows the user their own file's name.
TEXT_WITHOUT_UPLOADER = f"""() => {{
    const copy = document.body.cloneNode(true);
    copy.querySelectorAll('{UPLOADER}').forEach(node => node.remove());
    return copy.textContent;
}}"""

Snapshot = dict[Path, tuple[int, int]]


def _large_random_pixels(ds: Dataset) -> None:
    """1024 x 1024 16-bit noise: over 1 MiB (Starlette's spool threshold) and unique per run."""
    ds.Rows = ds.Columns = 1024
    ds.PixelData = np.random.default_rng().integers(0, 4096, (1024, 1024), np.uint16).tobytes()


def _snapshot(*roots: Path) -> Snapshot:
    """Size and modification time of every regular file under ``roots``."""
    files: Snapshot = {}
    for root in roots:
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            for name in names:
                path = Path(folder, name)
                try:
                    info = path.lstat()
                except OSError:
                    continue  # removed meanwhile
                if stat.S_ISREG(info.st_mode):
                    files[path] = (info.st_size, info.st_mtime_ns)
    return files


def _traces(upload: bytes, name: str) -> list[bytes]:
    """Byte strings whose presence in a file means the upload or an identifier was written."""
    digest = hashlib.sha256(upload).hexdigest()
    forms = [form for keyword_forms in NEEDLES.values() for form in keyword_forms]
    return [text.lower().encode() for text in (digest, digest[:16], name, *forms)] + [
        upload[-4096:-4032].lower()]


def _holding(before: Snapshot, after: Snapshot, traces: list[bytes]) -> list[Path]:
    """Files new or changed since ``before`` that contain any of ``traces``."""
    found = []
    for path, stamp in after.items():
        if before.get(path) == stamp or stamp[0] > LARGEST_SCANNED:
            continue
        try:
            content = path.read_bytes().lower()
        except OSError:
            continue  # removed meanwhile, or not readable
        if any(trace in content for trace in traces):
            found.append(path)
    return found


def _writes_between(output: str, start: float, end: float) -> list[str]:
    """Files the audited server opened for writing between ``start`` and ``end``."""
    return [path for when, path in AUDIT_LINE.findall(output) if start <= float(when) <= end]


def _download(page: Page, label: str) -> bytes:
    with page.expect_download() as download:
        page.get_by_role("button", name=label).click()
    return Path(download.value.path()).read_bytes()


def test_control_the_audit_hook_reports_an_unnamed_temporary_file() -> None:
    """What Starlette did with uploads over 1 MiB before pages/ raised its spool threshold."""
    code = AUDIT_PRELUDE + "\ntempfile.TemporaryFile().write(b'x')\n"
    start = time.time()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    writes = _writes_between(result.stderr, start, time.time())
    assert writes and set(writes) == {repr(tempfile.gettempdir())}


def test_control_the_scan_finds_a_copy_of_the_upload(tmp_path: Path) -> None:
    upload = phi_dicom("MR_small.dcm", _large_random_pixels)
    before = _snapshot(tmp_path)
    (tmp_path / "spooled").write_bytes(upload[-8192:])  # pixel data only: no identifier in it
    assert _holding(before, _snapshot(tmp_path), _traces(upload, "scan.dcm")) == [
        tmp_path / "spooled"]


def test_upload_leaves_no_identifier_and_no_copy(page: Page, tiny_registry: Path,
                                                 tmp_path: Path) -> None:
    upload = phi_dicom("MR_small.dcm", _large_random_pixels)
    name = f"{PHI['PatientID']}.dcm"  # as exported by many PACS
    series = zip_bytes({"IM0001": upload, "IM0002": phi_dicom("MR_small.dcm")})
    roots = (Path(tempfile.gettempdir()), REPO)
    before = _snapshot(*roots)
    output = tmp_path / "server.log"
    env = {WEIGHTS_DIR_ENV: str(tiny_registry), "PYTHONDONTWRITEBYTECODE": "1"}  # as in Docker
    with running_app(output=output, prelude=AUDIT_PRELUDE, flags=("--logger.level", "debug"),
                     env=env) as url:
        page.goto(f"{url}/Predict")
        page.get_by_text("Upload an image to start.").wait_for()
        start = time.time()
        page.locator(f'{UPLOADER} input[type="file"]').set_input_files(
            {"name": name, "mimeType": "application/dicom", "buffer": upload})
        page.get_by_role("button", name="Predict").click()
        label = page.locator('[data-testid="stMetricValue"]').inner_text()
        page.get_by_role("combobox", name="Explain class").click()  # the viewer's every view
        page.get_by_role("option", name="every class (one row each)").click()
        page.get_by_text("what the model sees").click()
        page.locator(".js-plotly-plot g.imagelayer image").nth(12).wait_for(state="attached")
        reports = {kind: _download(page, f"Report ({kind})") for kind in ("HTML", "PDF")}
        overlays = _download(page, "Overlays (PNG)")
        shown = page.evaluate(TEXT_WITHOUT_UPLOADER)
        page.goto(f"{url}/Worklist")  # a series of two identified slices, zipped
        page.get_by_role("combobox", name="Modality").click()
        page.get_by_role("option", name="brain MRI", exact=True).click()
        page.locator(f'{UPLOADER} input[type="file"]').set_input_files(
            {"name": "series.zip", "mimeType": "application/zip", "buffer": series})
        page.get_by_text("2 files, 2 with a label").wait_for()
        worklist = _download(page, "Worklist (CSV)").decode()
        shown += page.evaluate(TEXT_WITHOUT_UPLOADER)
        end = time.time()
    traces = _traces(upload, name) + _traces(series, "series.zip")
    changed_files = _holding(before, _snapshot(*roots), traces)
    server_output = output.read_text(errors="replace")
    assert label.strip() in TINY_CLASSES["mri"]
    assert leaked(shown) == []
    assert leaked(reports["HTML"]) == [] and leaked(pdf_text(reports["PDF"])) == []
    assert overlays.startswith(b"\x89PNG") and leaked(overlays) == []
    assert worklist.splitlines()[1].startswith("IM0001,mri,brain-tumour,user,") and leaked(worklist) == []
    assert "DEBUG:" in server_output  # the server's logging really is at DEBUG
    assert leaked(server_output) == []
    assert _writes_between(server_output, start, end) == []
    assert changed_files == []
