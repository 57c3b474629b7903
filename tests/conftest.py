"""Fixtures shared by all test packages."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

TINY_CLASSES = {"mri": ["glioma", "meningioma", "notumor", "pituitary"], "xray": ["normal", "pneumonia"]}


def register_tiny_model(root: Path, modality: str, arch: str = "resnet18", seed: int = 0,
                        **overrides: object):
    """Register a random-init model for ``modality`` under ``root`` (for tests only); a modality
    outside :data:`TINY_CLASSES` needs ``classes`` among the card ``overrides``."""
    from models.registry import save_model
    from models.zoo import build_model, get_arch

    torch.manual_seed(seed)
    classes = list(overrides.get("classes") or TINY_CLASSES[modality])
    model = build_model(arch, len(classes))
    spec = get_arch(arch)
    fields: dict[str, object] = {
        "name": f"tiny-{modality}-{arch}", "modality": modality, "arch": arch, "classes": classes,
        "input_size": 64, "mean": list(spec.mean), "std": list(spec.std),
        "preprocessing": "resize", "data": {"name": "random init (test)"},
    }
    fields.update(overrides)
    return save_model(model, root / str(fields["name"]), **fields)


def register_tiny_colonoscopy(root: Path, name: str = "colonoscopy-tiny", **overrides: object):
    """Register a random-init colonoscopy polyp model (masked frames) under ``root``."""
    fields: dict[str, object] = {"classes": ["non-polyp", "polyp"], "task": "colonoscopy-polyp",
                                 "preprocessing": "mask_frame", **overrides}
    return register_tiny_model(root, "endoscopy", name=name, **fields)


ROUTES = ["capsule-bleeding", "colonoscopy-polyp", "mri"]
"""The classes of :func:`register_biased_router`'s router: two endoscopy tasks and a modality."""


def register_biased_router(root: Path, favourite: str) -> Path:
    """A router that reads every image as ``favourite`` of :data:`ROUTES` (about 99% sure): a
    zero-weight head with one large bias, so a test knows its reading without mocking it."""
    from models.registry import save_model
    from models.zoo import build_model, get_arch

    model = build_model("resnet18", len(ROUTES))
    with torch.no_grad():
        model.fc[1].weight.zero_()
        model.fc[1].bias.copy_(torch.tensor([5.0 if c == favourite else 0.0 for c in ROUTES]))
    spec = get_arch("resnet18")
    save_model(model, root / "router-tiny", name="router-tiny", modality="any", kind="router",
               arch="resnet18", classes=ROUTES, input_size=64, mean=list(spec.mean),
               std=list(spec.std), preprocessing="resize")
    return root / "router-tiny"


def kvasir_test_split(data: Path, count: int) -> tuple[list[str], dict[str, object]]:
    """``count`` Kvasir-SEG frame names and a card ``split`` listing them (and one HyperKvasir
    frame without a polyp) as the test split, as a colonoscopy model's card would."""
    names = [p.name for p in sorted((data / "kvasir-seg" / "images").glob("*.jpg"))[3:3 + count]]
    other = sorted((data / "hyperkvasir-lower-gi" / "bbps-2-3").glob("*.jpg"))[0].name
    files = [f"kvasir-seg/images/{n}" for n in names] + [f"hyperkvasir-lower-gi/bbps-2-3/{other}"]
    return names, {"test_files": files}


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with a tiny random ResNet-18 for ``mri`` (4 classes) and ``xray`` (2)."""
    root = tmp_path_factory.mktemp("weights")
    for modality in TINY_CLASSES:
        register_tiny_model(root, modality)
    return root


def copy_entry(registry: Path, into: Path, name: str = "tiny-mri-resnet18") -> Path:
    """A copy of the registry entry ``name`` under ``into`` (to tamper with safely)."""
    folder = into / name
    shutil.copytree(registry / name, folder)
    return folder


def rewrite_card(folder: Path, **changes: object) -> None:
    """Change fields of the card in ``folder`` as raw JSON (no validation)."""
    raw = json.loads((folder / "card.json").read_text())
    raw.update(changes)
    (folder / "card.json").write_text(json.dumps(raw))


SHARED_DATA_HINT = "shared data not found: set MEDXAI_DATA or place shared/data beside the repo"


def shared_data_root() -> Path | None:
    """The staged real data: ``$MEDXAI_DATA``, else ``shared/data`` beside the repo; None if absent.

    Usable at collection time (e.g. to parametrise over a ``SOURCES.csv``).
    """
    configured = os.environ.get("MEDXAI_DATA")
    root = Path(configured) if configured else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return root if root.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The staged real data folder; skips the test when it is absent."""
    root = shared_data_root()
    if root is None:
        pytest.skip(SHARED_DATA_HINT)
    return root
