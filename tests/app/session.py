"""Driving a page through Streamlit's AppTest: open it, upload a file, find a button."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Button

REPO = Path(__file__).resolve().parents[2]
PAGES = {"predict": "1_Predict.py", "compare": "2_Compare.py", "models": "3_Models.py",
         "worklist": "4_Worklist.py"}


def open_page(name: str) -> AppTest:
    """The page ``name`` (predict, compare, models or worklist), run once."""
    return AppTest.from_file(str(REPO / "pages" / PAGES[name]), default_timeout=120).run()


def upload(at: AppTest, name: str, data: bytes, index: int = 0) -> AppTest:
    """Upload ``data`` as ``name`` into the ``index``-th uploader and rerun the page."""
    at.file_uploader[index].upload(name, data, "application/octet-stream")
    return at.run()


def button(at: AppTest, label: str) -> Button:
    """The page's button labelled ``label``."""
    return next(b for b in at.button if b.label == label)


def viewer_figure(at: AppTest) -> dict:
    """The Predict page's map viewer as a plotly figure dict (data and layout)."""
    charts = [c for c in at.get("plotly_chart") if '"type":"image"' in c.proto.spec.replace(" ", "")]
    assert len(charts) == 1, f"{len(charts)} viewers on the page"
    return json.loads(charts[0].proto.spec)


def panel_titles(at: AppTest) -> list[str]:
    """The titles above the viewer's panels."""
    return [a["text"] for a in viewer_figure(at)["layout"]["annotations"]]


def deferred_downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[], object]]:
    """File name -> the callable a download button defers to (filled as pages run): what a
    browser's click on that button would get, which AppTest cannot click."""
    callables: dict[str, Callable[[], object]] = {}
    register = MediaFileManager.add_deferred

    def recording(self, data_callable, mimetype, coordinates, file_name=None, **options):
        callables[str(file_name)] = data_callable
        return register(self, data_callable, mimetype, coordinates, file_name=file_name,
                        **options)

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    return callables
