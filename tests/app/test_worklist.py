"""The Worklist page through AppTest on the tiny models: files and a .zip fill one table, the
CSV, and a prior/current pair side by side."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from models.worklist import to_csv
from tests.app.session import button, open_page, viewer_figure
from tests.imaging.builders import dicom_bytes, noise_image, zip_bytes


@pytest.fixture(autouse=True)
def weights_env(monkeypatch: pytest.MonkeyPatch, tiny_registry: Path) -> Path:
    monkeypatch.setenv("MEDXAI_WEIGHTS_DIR", str(tiny_registry))
    return tiny_registry


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    noise_image().rotate(90 * seed).save(buffer, "PNG")
    return buffer.getvalue()


def _tagged(modality: str):
    def edit(ds) -> None:
        ds.Modality = modality

    return edit


def _worklist(files: dict[str, bytes], modality: str | None = None) -> AppTest:
    at = open_page("worklist")
    if modality:
        at.selectbox(key="worklist-modality").set_value(modality).run()
    for name, data in files.items():
        at.file_uploader[0].upload(name, data, "application/octet-stream")
    return at.run()


def test_five_files_fill_the_table_and_the_csv() -> None:
    series = zip_bytes({"export/series/IM0001": dicom_bytes("MR_small.dcm", _tagged("MR")),
                   "export/series/IM0002": dicom_bytes("MR_small.dcm", _tagged("MR"))})
    at = _worklist({"a.png": _png(0), "b.png": _png(1), "c.png": _png(2)[:90],
                    "series.zip": series}, modality="mri")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["file"]) == ["a.png", "b.png", "c.png", "IM0001", "IM0002"]
    assert list(table["label"][[0, 1, 3, 4]].isin(["glioma", "meningioma", "notumor",
                                                     "pituitary"])) == [True] * 4
    assert table["problem"][2].startswith("c.png:") and table["label"][2] == ""
    assert table["image"][0].startswith("data:image/jpeg;base64,")  # the thumbnail
    items = at.session_state["worklist"][1]
    csv = to_csv(items)
    assert csv.splitlines()[0] == "file,modality,task,detected by,label,confidence,warnings,problem"
    assert "export/" not in csv and len(csv.splitlines()) == 6
    assert [b.label for b in at.get("download_button")] == ["Worklist (CSV)"]
    pair = viewer_figure(at)  # prior and current side by side, each with its map
    titles = [a["text"] for a in pair["layout"]["annotations"]]
    assert [t.split(":")[0] for t in titles] == ["Prior", "Prior", "Current", "Current"]
    assert len({a["matches"] for k, a in pair["layout"].items() if k.startswith("xaxis")
                and "matches" in a}) == 1  # one zoom for all four panels


def test_images_of_two_modalities_cannot_be_paired() -> None:
    at = _worklist({"chest.dcm": dicom_bytes("MR_small.dcm", _tagged("CR")),
                    "head.dcm": dicom_bytes("MR_small.dcm", _tagged("MR"))})
    assert not at.exception
    assert list(at.dataframe[0].value["modality"]) == ["xray", "mri"]
    assert any("different modalities" in w.value for w in at.warning)
    at.selectbox(key="worklist-modality").set_value("mri").run()  # insist: both read as MRI
    assert not any("different modalities" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 1


def test_reading_happens_once_per_upload() -> None:
    at = _worklist({"a.png": _png(0), "b.png": _png(1)}, modality="mri")
    items = at.session_state["worklist"][1]
    at.slider(key="worklist-alpha").set_value(0.8).run()
    at.selectbox(key="worklist-cmap").set_value("cividis").run()
    assert at.session_state["worklist"][1] is items and not at.exception


def test_an_upload_over_the_limit_is_read_as_a_batch_with_its_downloads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.worklist.INTERACTIVE_LIMIT", 3)
    at = _worklist({"a.png": _png(0), "b.png": _png(1), "c.png": _png(2), "d.png": _png(3)[:90]},
                   modality="mri")
    assert not at.exception and "read as a batch" in at.info[0].value
    assert "worklist" not in at.session_state and not at.dataframe  # not read one by one
    at.selectbox(key="worklist-rank-by").set_value("glioma").run()
    at.number_input(key="worklist-top").set_value(1).run()
    button(at, "Read as a batch").click().run()
    assert not at.exception
    table = at.dataframe[0].value
    assert sorted(table["file"]) == ["a.png", "b.png", "c.png", "d.png"]
    assert list(table["p_glioma"][:3]) == sorted(table["p_glioma"][:3], reverse=True)
    assert table["file"][3] == "d.png" and table["error"][3]  # broken: last, with its reason
    run = at.session_state["worklist-batch"][2]
    assert run.results_csv.splitlines()[0].startswith("file,modality,task,")
    assert run.summary_html.count("data:image/png;base64,") == 1 + 1 + 3  # plot, original, maps
    assert [b.label for b in at.get("download_button")] == ["Results (CSV)",
                                                            "Summary with heat maps (HTML)"]
    at.run()
    assert at.session_state["worklist-batch"][2] is run  # a rerun keeps the batch
