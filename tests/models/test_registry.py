from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from models.card import CardError, ModelCard
from models.registry import (
    WEIGHTS_DIR_ENV,
    ModelUnavailable,
    find_card,
    list_cards,
    load_for_modality,
    load_model,
    registry_status,
    sha256_bytes,
)
from tests.conftest import copy_entry, register_tiny_model, rewrite_card

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_loads_the_same_weights(tmp_path: Path) -> None:
    card = register_tiny_model(tmp_path, "xray", seed=7)
    loaded = load_for_modality("xray", tmp_path, device="cpu")
    torch.manual_seed(7)
    from models.zoo import build_model

    reference = build_model("resnet18", 2)
    assert loaded.card == card
    assert not loaded.model.training
    # fp16 storage: equal to the reference within half precision
    assert torch.allclose(loaded.model.conv1.weight, reference.conv1.weight, atol=1e-3)
    assert loaded.model.conv1.weight.dtype == torch.float32


def test_card_records_provenance(tiny_registry: Path) -> None:
    card = ModelCard.read(tiny_registry / "tiny-mri-resnet18")
    assert len(card.sha256) == 64 and card.code_version and card.created
    assert card.classes == ["glioma", "meningioma", "notumor", "pituitary"]


def test_tampered_weights_are_refused(tiny_registry: Path, tmp_path: Path) -> None:
    folder = copy_entry(tiny_registry, tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    expected = json.loads((folder / "card.json").read_text())["sha256"]
    with pytest.raises(ModelUnavailable, match="sha256 of model.safetensors .* does not match") as exc:
        load_model(folder)
    assert sha256_bytes(bytes(data))[:12] in str(exc.value) and expected[:12] in str(exc.value)


def test_missing_weights_file(tiny_registry: Path, tmp_path: Path) -> None:
    folder = copy_entry(tiny_registry, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailable, match="missing"):
        load_model(folder)


def test_pickle_payload_with_matching_hash_is_refused(tiny_registry: Path, tmp_path: Path) -> None:
    """Even a file whose sha256 the card vouches for is never unpickled beyond tensors."""
    from models.registry import sha256_bytes

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    folder = copy_entry(tiny_registry, tmp_path)
    torch.save({"conv1.weight": Payload()}, folder / "model.pth")
    rewrite_card(folder, weights_file="model.pth",
                  sha256=sha256_bytes((folder / "model.pth").read_bytes()))
    with pytest.raises(ModelUnavailable, match="cannot be read safely"):
        load_model(folder)
    assert not (tmp_path / "pwned").exists()


def test_class_list_must_match_head(tiny_registry: Path, tmp_path: Path) -> None:
    folder = copy_entry(tiny_registry, tmp_path)
    rewrite_card(folder, classes=["a", "b", "c"])
    with pytest.raises(ModelUnavailable, match="3 classes but the weights' head has 4 outputs"):
        load_model(folder)


def test_weights_for_another_arch_are_refused(tiny_registry: Path, tmp_path: Path) -> None:
    folder = copy_entry(tiny_registry, tmp_path)
    rewrite_card(folder, arch="mobilenet_v2")
    with pytest.raises(ModelUnavailable, match="do not fit architecture mobilenet_v2"):
        load_model(folder)


def test_broken_model_disables_only_its_modality(tiny_registry: Path, tmp_path: Path) -> None:
    for name in ("tiny-mri-resnet18", "tiny-xray-resnet18"):
        copy_entry(tiny_registry, tmp_path, name)
    (tmp_path / "tiny-mri-resnet18" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelUnavailable) as err:
        load_for_modality("mri", tmp_path)
    assert err.value.modality == "mri"
    assert load_for_modality("xray", tmp_path).card.modality == "xray"


def test_status_says_plainly_when_no_model_is_installed(tiny_registry: Path) -> None:
    status = registry_status(tiny_registry)
    assert isinstance(status["mri"], ModelCard) and isinstance(status["xray"], ModelCard)
    for modality in ("endoscopy", "histology"):
        assert isinstance(status[modality], ModelUnavailable)
        assert "no model is installed" in str(status[modality])


def test_default_flag_picks_among_several(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "mri", name="a-mri", default=False)
    register_tiny_model(tmp_path, "mri", name="b-mri", default=True)
    assert find_card("mri", tmp_path)[1].name == "b-mri"


def test_unknown_modality_is_refused(tiny_registry: Path) -> None:
    with pytest.raises(ModelUnavailable, match="unknown modality"):
        find_card("ultrasound", tiny_registry)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modality": "ct"}, "modality"),
        ({"classes": ["only"]}, "classes"),
        ({"preprocessing": "magic"}, "preprocessing"),
        ({"sha256": "abc"}, "sha256"),
        ({"weights_file": "../evil.safetensors"}, "weights_file"),
    ],
)
def test_invalid_cards_are_rejected(tiny_registry: Path, tmp_path: Path, change: dict,
                                    message: str) -> None:
    folder = copy_entry(tiny_registry, tmp_path)
    rewrite_card(folder, **change)
    with pytest.raises(CardError, match=message):
        ModelCard.read(folder)
    with pytest.raises(ModelUnavailable):
        load_model(folder)


def test_incomplete_card(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text('{"name": "x"}')
    with pytest.raises(CardError, match="incomplete"):
        ModelCard.read(tmp_path)


def test_list_cards_reports_unreadable_cards(tiny_registry: Path, tmp_path: Path) -> None:
    copy_entry(tiny_registry, tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "card.json").write_text("{not json")
    entries = dict(list_cards(tmp_path))
    assert isinstance(entries[tmp_path / "tiny-mri-resnet18"], ModelCard)
    assert isinstance(entries[tmp_path / "broken"], CardError)
    assert find_card("mri", tmp_path)[0].name == "tiny-mri-resnet18"


def test_unknown_arch_disables_only_its_modality(tiny_registry: Path, tmp_path: Path) -> None:
    for name in ("tiny-mri-resnet18", "tiny-xray-resnet18"):
        copy_entry(tiny_registry, tmp_path, name)
    folder = tmp_path / "tiny-mri-resnet18"
    rewrite_card(folder, arch="no_such_net")
    error = dict(list_cards(tmp_path))[folder]
    assert isinstance(error, CardError)
    assert "'no_such_net' is unknown" in str(error) and "resnet18" in str(error)
    status = registry_status(tmp_path)
    assert isinstance(status["mri"], ModelUnavailable) and "no_such_net" in status["mri"].reason
    assert isinstance(status["xray"], ModelCard)
    with pytest.raises(ModelUnavailable, match="no_such_net") as err:
        load_model(folder)
    assert err.value.modality == "mri"
    with pytest.raises(ModelUnavailable, match="no_such_net"):
        load_for_modality("mri", tmp_path)


def test_unknown_arch_falls_back_to_a_valid_model(tiny_registry: Path, tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "mri", name="a-mri", default=False)
    register_tiny_model(tmp_path, "mri", name="b-mri", default=True)
    rewrite_card(tmp_path / "b-mri", arch="no_such_net")
    assert find_card("mri", tmp_path)[1].name == "a-mri"


def test_home_page_shows_unknown_arch_as_not_ready(tiny_registry: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("tiny-mri-resnet18", "tiny-xray-resnet18"):
        copy_entry(tiny_registry, tmp_path, name)
    rewrite_card(tmp_path / "tiny-mri-resnet18", arch="no_such_net")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    table = at.table[0].value
    status = dict(zip(table["modality"], table["status"], strict=True))
    assert "no_such_net" in status["mri"] and status["xray"] == "ready"


def test_code_version_ignores_the_registry_but_not_code(tmp_path: Path) -> None:
    """A recalibrated card in ``weights/`` leaves the code clean; an edited module does not."""
    import subprocess

    from models.card import code_version

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    (tmp_path / "weights" / "m").mkdir(parents=True)
    (tmp_path / "weights" / "m" / "card.json").write_text("{}")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    commit = git("rev-parse", "HEAD").strip()
    assert code_version(tmp_path) == commit
    (tmp_path / "weights" / "m" / "card.json").write_text('{"temperature": 0.5}')
    assert code_version(tmp_path) == commit
    (tmp_path / "train.py").write_text("x = 2\n")
    assert code_version(tmp_path) == commit + "+dirty"
    assert code_version(tmp_path / "no-repo-here") == "unknown"
