"""Routing: who decides the modality, the warnings, and the shipped router on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imaging import LoadedImage, load_path
from models import predict as predict_cli
from models.predict import Prediction
from models.registry import default_weights_dir, find_router
from models.route import Routing, load_router, route, route_and_load

EXAMPLES = {"mri": "brain-tumor-mri/meningioma", "xray": "chest-xray-pneumonia/normal",
            "endoscopy": "wce-bleeding/bleeding", "histology": "lc25000-lung/lung_aca"}


def _reading(label: str, confidence: float, in_distribution: bool | None = True) -> Prediction:
    others = {m: (1 - confidence) / 3 for m in ("mri", "xray", "endoscopy", "histology") if m != label}
    return Prediction(label, 0, confidence, {label: confidence, **others}, 1.0, in_distribution,
                      0.5)


def test_user_choice_against_a_confident_router_is_flagged() -> None:
    routing = Routing("endoscopy", "user", _reading("mri", 0.99))
    assert routing.modality == "endoscopy" and len(routing.warnings) == 1
    assert "looks like brain MRI (99%), but you chose endoscopy" in routing.warnings[0]
    assert not Routing("endoscopy", "user", _reading("mri", 0.6)).warnings
    assert not Routing("mri", "router", _reading("mri", 0.99)).warnings
    tagged = Routing("xray", "dicom", _reading("mri", 0.95))
    assert "the DICOM header says X-ray" in tagged.warnings[0]


def test_foreign_image_is_unknown_unless_the_user_insists() -> None:
    unknown = Routing(None, "router", _reading("xray", 0.9, in_distribution=False))
    assert not unknown.recognised and "no model was run" in unknown.warnings[0]
    insisted = Routing("xray", "user", _reading("xray", 0.9, in_distribution=False))
    assert "not reliable" in insisted.warnings[0]
    assert Routing(None, "none").warnings == [] and Routing(None, "none").confidence is None


def test_without_a_router_the_tag_or_the_user_decides() -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    assert route(LoadedImage(rgb, suggested_modality="mri"), None) == Routing("mri", "dicom")
    assert route(LoadedImage(rgb, suggested_modality="mri"), None, "xray") == Routing("xray", "user")
    assert route(rgb, None) == Routing(None, "none")


@pytest.fixture(scope="module")
def router():
    try:
        find_router()
    except Exception:
        pytest.skip(f"no modality router installed in {default_weights_dir()}")
    return load_router()


def _first(folder: Path) -> Path:
    return sorted(folder.glob("*.jpg"))[0]


@pytest.mark.parametrize("modality", sorted(EXAMPLES))
def test_shipped_router_recognises_each_modality(router, shared_data: Path, modality: str) -> None:
    image = load_path(_first(shared_data / EXAMPLES[modality]))
    routing = route(image, router)
    assert (routing.modality, routing.source) == (modality, "router")
    assert routing.confidence > 0.9 and not routing.warnings


def test_shipped_router_refuses_photos_and_a_ct_slice(router) -> None:
    from pydicom.data import get_testdata_file
    from skimage import data

    ct = load_path(get_testdata_file("CT_small.dcm"))
    ct_as_png = LoadedImage(ct.rgb)  # rendered: the Modality tag cannot help
    for rgb in (data.astronaut(), data.coffee(), ct_as_png.rgb):
        routing = route(rgb, router)
        assert routing.modality is None and routing.warnings, routing
    with pytest.raises(ValueError, match="no known modality was recognised"):
        route_and_load(LoadedImage(np.ascontiguousarray(data.chelsea())))


def test_cli_routes_an_mri_jpeg_and_refuses_a_photo(router, shared_data: Path, tmp_path: Path,
                                                     capsys) -> None:
    path = _first(shared_data / EXAMPLES["mri"])
    assert predict_cli.main([str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modality"] == "mri" and result["modality_source"] == "router"
    assert result["label"] in ("glioma", "meningioma", "notumor", "pituitary")
    for key in ("modality_confidence", "in_distribution", "ood_score", "uncertain", "uncertainty",
                "probabilities", "latency_ms", "warnings"):
        assert key in result
    from PIL import Image
    from skimage import data

    photo = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()).save(photo)
    assert predict_cli.main([str(photo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no known modality was recognised" in err[0]
    assert predict_cli.main([str(photo), "--modality", "xray", "--json"]) == 0
    insisted = json.loads(capsys.readouterr().out)
    assert insisted["modality_source"] == "user" and insisted["warnings"]
