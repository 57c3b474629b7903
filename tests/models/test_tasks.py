"""Tasks: one default model per (modality, task), and routing an upload to its task.

A registry with a capsule model whose card predates tasks, a colonoscopy model and a router
whose head always favours one class (zero weights, one large bias), on real Kvasir-SEG frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imaging import LoadedImage, load_path
from models import predict as predict_cli
from models.card import DEFAULT_TASKS, TASKS, CardError, ModelCard, routed_to
from models.registry import (
    ModelUnavailable,
    find_card,
    load_for_modality,
    load_named,
    registry_status,
)
from models.route import Routing, describe, load_router, route, route_and_load
from tests.conftest import (
    copy_entry,
    register_biased_router,
    register_tiny_colonoscopy,
    register_tiny_model,
    rewrite_card,
)


def _forget_task(folder: Path) -> None:
    """Rewrite the card as written before cards had a task."""
    raw = json.loads((folder / "card.json").read_text())
    raw.pop("task")
    (folder / "card.json").write_text(json.dumps(raw))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A capsule model with a task-less card and a colonoscopy model, both default; the
    colonoscopy folder sorts first, so only the task can keep the capsule model the default
    of ``endoscopy``."""
    root = tmp_path_factory.mktemp("tasks")
    register_tiny_model(root, "endoscopy", name="capsule-tiny", classes=["bleeding", "non-bleeding"])
    _forget_task(root / "capsule-tiny")
    register_tiny_colonoscopy(root, "a-colonoscopy")
    register_tiny_model(root, "mri")
    return root


@pytest.fixture(scope="module")
def polyp_frame(shared_data: Path) -> LoadedImage:
    return load_path(sorted((shared_data / "kvasir-seg" / "images").glob("*.jpg"))[0])


def test_a_card_from_before_tasks_has_its_modality_first_task(registry: Path) -> None:
    assert "task" not in json.loads((registry / "capsule-tiny" / "card.json").read_text())
    assert ModelCard.read(registry / "capsule-tiny").task == "capsule-bleeding"
    assert set(DEFAULT_TASKS) == {task.modality for task in TASKS.values()}
    assert all(TASKS[task].modality == modality for modality, task in DEFAULT_TASKS.items())


@pytest.mark.parametrize(("change", "message"), [
    ({"task": "brain-tumour"}, "not a task of endoscopy"),
    ({"task": "polyp-hunting"}, "not a task of endoscopy"),
    ({"kind": "router", "modality": "any", "task": "routing"}, "modalities or tasks"),
    ({"kind": "router", "modality": "any", "classes": ["mri", "xray"], "task": "capsule-bleeding"},
     "router's task"),
])
def test_cards_with_a_wrong_task_are_rejected(registry: Path, tmp_path: Path, change: dict,
                                              message: str) -> None:
    folder = copy_entry(registry, tmp_path, "a-colonoscopy")
    rewrite_card(folder, **change)
    with pytest.raises(CardError, match=message):
        ModelCard.read(folder)


def test_one_default_per_modality_and_task(registry: Path) -> None:
    assert find_card("endoscopy", registry)[1].name == "capsule-tiny"  # the first task
    assert find_card("endoscopy", registry, "colonoscopy-polyp")[1].name == "a-colonoscopy"
    assert find_card("endoscopy", registry, "capsule-bleeding")[1].name == "capsule-tiny"
    loaded = load_for_modality("endoscopy", registry, "cpu", task="colonoscopy-polyp")
    assert loaded.card.preprocessing == "mask_frame" and loaded.card.classes[-1] == "polyp"
    assert registry_status(registry)["endoscopy"].name == "capsule-tiny"
    status = registry_status(registry, by_task=True)
    assert set(status) == {(task.modality, name) for name, task in TASKS.items()}
    assert status[("endoscopy", "colonoscopy-polyp")].name == "a-colonoscopy"
    assert status[("mri", "brain-tumour")].name == "tiny-mri-resnet18"
    missing = status[("xray", "chest-pneumonia")]
    assert isinstance(missing, ModelUnavailable) and "--task chest-pneumonia" in missing.reason


def test_a_task_without_a_model_is_named_and_its_modality_falls_back(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "endoscopy", name="colonoscopy-only", classes=["a", "polyp"],
                        task="colonoscopy-polyp")
    assert find_card("endoscopy", tmp_path)[1].name == "colonoscopy-only"
    with pytest.raises(ModelUnavailable, match=r"capsule endoscopy for bleeding \(capsule-bleeding\)"):
        find_card("endoscopy", tmp_path, "capsule-bleeding")
    with pytest.raises(ModelUnavailable, match="unknown task 'brain-tumour'"):
        find_card("endoscopy", tmp_path, "brain-tumour")


def test_a_modality_without_a_task_prefers_its_first_task(tmp_path: Path) -> None:
    register_tiny_colonoscopy(tmp_path, "a-colonoscopy")
    register_tiny_model(tmp_path, "endoscopy", name="b-capsule", classes=["x", "y"],
                        default=False)
    assert find_card("endoscopy", tmp_path)[1].name == "b-capsule"
    register_tiny_model(tmp_path, "endoscopy", name="c-capsule", classes=["x", "y"])
    assert find_card("endoscopy", tmp_path)[1].name == "c-capsule"  # the default among them


def test_models_load_by_name_or_folder(registry: Path) -> None:
    assert load_named("a-colonoscopy", registry, "cpu").card.task == "colonoscopy-polyp"
    assert load_named(registry / "capsule-tiny", device="cpu").card.name == "capsule-tiny"
    with pytest.raises(ModelUnavailable, match="installed: a-colonoscopy, capsule-tiny"):
        load_named("colonoscopy-lite0", registry)


def test_router_classes_stand_for_a_modality_and_maybe_a_task() -> None:
    assert routed_to("colonoscopy-polyp") == ("endoscopy", "colonoscopy-polyp")
    assert routed_to("mri") == ("mri", None)
    with pytest.raises(CardError):
        routed_to("lungs")
    assert describe("colonoscopy-polyp") == "colonoscopy for polyps" and describe("mri") == "brain MRI"


def test_the_router_names_the_task(registry: Path, tmp_path: Path,
                                   polyp_frame: LoadedImage) -> None:
    router = load_router(register_biased_router(tmp_path, "colonoscopy-polyp").parent)
    assert router is not None
    routing = route(polyp_frame, router)
    assert (routing.modality, routing.source, routing.task) == ("endoscopy", "router",
                                                                 "colonoscopy-polyp")
    # the modality's share is both endoscopy classes together
    assert routing.confidence == pytest.approx(sum(
        routing.router.probabilities[c] for c in ("capsule-bleeding", "colonoscopy-polyp")))
    assert routing.confidence > 0.99 and not routing.warnings
    tagged = route(LoadedImage(polyp_frame.rgb, suggested_modality="endoscopy"), router)
    assert (tagged.source, tagged.task) == ("dicom", "colonoscopy-polyp")
    chosen = route(polyp_frame, router, "endoscopy")
    assert (chosen.source, chosen.task) == ("user", "colonoscopy-polyp") and not chosen.warnings


def test_the_user_can_override_the_task_or_the_modality(tmp_path: Path,
                                                        polyp_frame: LoadedImage) -> None:
    router = load_router(register_biased_router(tmp_path, "colonoscopy-polyp").parent)
    override = route(polyp_frame, router, task="capsule-bleeding")
    assert (override.modality, override.task, override.source) == ("endoscopy", "capsule-bleeding",
                                                                    "user")
    other = route(polyp_frame, router, "mri")
    assert (other.modality, other.task) == ("mri", None)
    assert "looks like colonoscopy for polyps (99%), but you chose brain MRI" in other.warnings[0]
    with pytest.raises(ValueError, match="reads endoscopy, not brain MRI"):
        route(polyp_frame, router, "mri", task="colonoscopy-polyp")
    with pytest.raises(ValueError, match="unknown task"):
        route(polyp_frame, router, task="polyp")
    assert route(polyp_frame, None, task="colonoscopy-polyp") == Routing(
        "endoscopy", "user", None, "colonoscopy-polyp")


def test_route_and_load_and_the_cli_reach_the_task_model(registry: Path, tmp_path: Path,
                                                         polyp_frame: LoadedImage,
                                                         shared_data: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "weights"
    for name in ("capsule-tiny", "a-colonoscopy"):
        copy_entry(registry, root, name)
    register_biased_router(root, "colonoscopy-polyp")
    routing, loaded = route_and_load(polyp_frame, root=root)
    assert routing.task == "colonoscopy-polyp" and loaded.card.name == "a-colonoscopy"
    _, capsule = route_and_load(polyp_frame, root=root, task="capsule-bleeding")
    assert capsule.card.name == "capsule-tiny"
    frame = sorted((shared_data / "kvasir-seg" / "images").glob("*.jpg"))[0]
    assert predict_cli.main([str(frame), "--weights-dir", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["model"], result["task"], result["modality_source"]) == (
        "a-colonoscopy", "colonoscopy-polyp", "router")
    assert set(result["probabilities"]) == {"non-polyp", "polyp"}
    (root / "a-colonoscopy" / "card.json").unlink()  # the router's task has no model now
    with pytest.raises(ModelUnavailable, match="colonoscopy for polyps"):
        route_and_load(polyp_frame, root=root)


def test_shipped_router_tells_capsule_from_colonoscopy(shared_data: Path) -> None:
    router = load_router()
    assert router is not None and "colonoscopy-polyp" in router.card.classes, "router predates tasks"
    for folder, task in (("kvasir-seg/images", "colonoscopy-polyp"),
                         ("hyperkvasir-lower-gi/bbps-2-3", "colonoscopy-polyp"),
                         ("wce-bleeding/non-bleeding", "capsule-bleeding")):
        frames = sorted((shared_data / folder).glob("*.jpg"))[:5]
        tasks = [route(load_path(f), router).task for f in frames]
        assert tasks == [task] * len(frames), folder
