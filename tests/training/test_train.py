"""End-to-end training runs on tiny data: registry entry, predict, evaluate, resume, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.card import ModelCard
from models.registry import load_model
from tests.conftest import copy_entry, rewrite_card
from tests.training.helpers import CLASSES, make_image_folder
from training import evaluate, train
from training.data import list_files
from training.shift import SHIFTS

REPO = Path(__file__).resolve().parents[2]
# Tiny and fast: ResNet-18 from random weights at 32 px, one thread.
TINY = ["--arch", "resnet18", "--pretrained", "none", "--input-size", "32", "--batch-size", "8",
        "--ratios", "2:1:1", "--threads", "1", "--schedule", "constant", "--seed", "3"]


def _train(data: Path, out: Path, ckpt: Path, *extra: str) -> ModelCard:
    assert train.main(["--data", str(data), "--modality", "histology", "--out", str(out),
                       "--checkpoint-dir", str(ckpt), *TINY, *extra]) == 0
    return ModelCard.read(out)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ModelCard]:
    """Images made on the fly, one warm-up epoch on cached features plus one fine-tuning epoch."""
    root = tmp_path_factory.mktemp("train")
    data = make_image_folder(root / "data", per_class=8)
    card = _train(data, root / "weights" / "histo-tiny", root / "ckpt", "--epochs", "1",
                  "--warmup-epochs", "1", "--rotation", "10", "--hflip", "--default")
    return data, root / "weights", card


def test_generated_run_writes_a_loadable_registry_entry(generated, capsys) -> None:
    data, weights, card = generated
    assert card.classes == list(CLASSES) and card.input_size == 32 and card.default
    assert card.split["test_files"] and card.split["seed"] == 3
    assert card.recipe["command"].startswith("python -m training.train --data ")
    assert [row["stage"] for row in card.metrics["training"]["history"]] == ["head", "full"]
    training = card.metrics["training"]
    assert training["best_stage"] == training["history"][training["best_epoch"] - 1]["stage"]
    assert {"ece_before", "ece_after", "temperature"} <= set(card.metrics["calibration"])
    assert card.temperature == pytest.approx(card.metrics["calibration"]["temperature"])
    load_model(weights / "histo-tiny", device="cpu")

    from models import predict

    image = next((data / "beta").iterdir())
    capsys.readouterr()
    assert predict.main([str(image), "--modality", "histology", "--weights-dir", str(weights), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "histo-tiny" and set(result["probabilities"]) == set(CLASSES)


def test_evaluate_test_split_reproduces_card(generated, tmp_path, capsys) -> None:
    data, weights, card = generated
    capsys.readouterr()
    assert evaluate.main(["--data", str(data), "--modality", "histology", "--weights-dir",
                          str(weights), "--split", "test", "--json", "--plots", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == card.metrics["n"]
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "auc_macro", "ece"):
        assert report[key] == pytest.approx(card.metrics[key], abs=1e-4), key
    assert report["confusion_matrix"] == card.metrics["confusion_matrix"]
    for name in ("confusion_matrix", "roc", "reliability"):
        assert (tmp_path / f"{name}.html").stat().st_size > 0
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_recalibration_rescores_the_model_as_evaluate_does(generated, tmp_path, capsys) -> None:
    """``training.calibrate`` re-chooses views, T and threshold on the rebuilt validation split
    and rewrites the test figures, which ``evaluate --split test`` then reproduces."""
    import shutil

    from training import calibrate

    data, weights, card = generated
    folder = tmp_path / "histo-tiny"
    shutil.copytree(weights / "histo-tiny", folder)
    capsys.readouterr()
    assert calibrate.main(["--model", str(folder)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("histo-tiny: crops ")
    # progress on stderr: each scoring pass, the shift guard's passes, the trust signals
    assert "histo-tiny: split rebuilt" in printed.err.splitlines()[0]
    assert "x 4 views, under sharpen x2" in printed.err and "trust signals" in printed.err
    again = ModelCard.read(folder)
    choice = again.metrics["calibration"]["test_time_views"]
    assert card.recipe["hflip"] and not card.recipe["vflip"]  # so the one flip tried is hflip
    assert [(c["crops"], c["flips"]) for c in choice["candidates"]] == [
        ([], []), ([0.9], []), ([0.8], []), ([], ["hflip"]), ([0.9, 0.8], []), ([0.9], ["hflip"]),
        ([0.8], ["hflip"]), ([0.9, 0.8], ["hflip"])]
    # every candidate was also scored on shifted images
    assert all(set(c["shifted_recall"]) == set(SHIFTS)
               and c["largest_shifted_loss"]["class"] in again.classes for c in choice["candidates"])
    assert choice["chosen"] == {"crops": again.test_time_crops, "flips": again.test_time_flips}
    assert again.metrics["recalibrated"]["command"] == f"python -m training.calibrate --model {folder}"
    assert again.metrics["training"] == card.metrics["training"] and again.sha256 == card.sha256
    assert again.trust["test"]["n"] == again.metrics["n"]
    assert evaluate.main(["--data", str(data), "--model", str(folder), "--split", "test",
                          "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "balanced_accuracy", "ece"):
        assert report[key] == pytest.approx(again.metrics[key], abs=1e-4), key
    assert calibrate.main(["--model", str(folder), "--no-test-time-crops"]) == 0
    alone = ModelCard.read(folder)
    assert alone.test_time_crops == [] and alone.metrics["recalibrated"]["command"].endswith(
        "--no-test-time-crops")
    capsys.readouterr()
    assert calibrate.main(["--model", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_evaluate_counts_near_copies_of_training_images(generated, tmp_path, capsys) -> None:
    """An "external" folder holding two of the training images (renamed) among three new ones:
    ``--near-copies`` finds those two and scores the other three; without its training data
    the model's card cannot be compared, one error line."""
    data, weights, card = generated
    external = make_image_folder(tmp_path / "external", per_class=1, seed=7)
    seen = [f for f in list_files(data).files if f not in card.split["test_files"]]
    for name in (next(f for f in seen if f.startswith(c)) for c in ("alpha", "beta")):
        shutil.copy(data / name, external / Path(name).parent / f"renamed_{Path(name).name}")
    capsys.readouterr()
    assert evaluate.main(["--data", str(external), "--model", "histo-tiny", "--weights-dir",
                          str(weights), "--near-copies", "--json"]) == 0
    copies = json.loads(capsys.readouterr().out)["near_copies"]
    assert copies["n"] == 5 and copies["copies"] == 2 and copies["compared_with"] == len(seen)
    assert copies["without_copies"]["n"] == 3 and copies["similarity"]["max"] > 0.999
    assert evaluate.main(["--data", str(external), "--model", "histo-tiny", "--weights-dir",
                          str(weights), "--near-copies"]) == 0
    assert "near copies of training images (thumbnail correlation > 0.95): 2 of 5" in \
        capsys.readouterr().out
    moved = copy_entry(weights, tmp_path / "moved", "histo-tiny")
    rewrite_card(moved, data={"sources": [{"source": str(tmp_path / "gone")}]})
    assert evaluate.main(["--data", str(external), "--model", str(moved), "--near-copies"]) == 2
    assert capsys.readouterr().err.count("error:") == 1


def test_evaluate_rejects_unknown_classes(generated, tmp_path, capsys) -> None:
    data, weights, _ = generated
    (tmp_path / "delta").mkdir()
    (tmp_path / "delta" / "x.png").write_bytes(next((data / "alpha").iterdir()).read_bytes())
    assert evaluate.main(["--data", str(tmp_path), "--model", "histo-tiny",
                          "--weights-dir", str(weights)]) == 2
    assert "['delta'] are not classes of the model" in capsys.readouterr().err


def test_resume_gives_the_same_next_epoch(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", per_class=6)
    no_warmup = ("--warmup-epochs", "0", "--rotation", "15", "--hflip")
    straight = _train(data, tmp_path / "w" / "a", tmp_path / "a", "--epochs", "2", *no_warmup)
    _train(data, tmp_path / "w" / "b", tmp_path / "b", "--epochs", "1", *no_warmup)
    resumed = _train(data, tmp_path / "w" / "b", tmp_path / "b", "--epochs", "2", "--resume", *no_warmup)
    first, second = (c.metrics["training"]["history"] for c in (straight, resumed))
    assert len(first) == len(second) == 2
    assert second[1]["train_loss"] == pytest.approx(first[1]["train_loss"], rel=1e-6)
    assert second[1]["val_loss"] == pytest.approx(first[1]["val_loss"], rel=1e-6)
    assert second[1]["train_loss"] != pytest.approx(second[0]["train_loss"], rel=1e-6)


def test_weight_average_is_validated_exported_and_resumed(tmp_path: Path) -> None:
    """--ema: validation and the best (exported) weights are the moving average's, not the raw
    model's, and a resumed run continues the average where it stopped."""
    data = make_image_folder(tmp_path / "data", per_class=6)
    ema = ("--warmup-epochs", "0", "--ema", "0.5", "--rotation", "15", "--batch-size", "2")
    straight = _train(data, tmp_path / "w" / "a", tmp_path / "a", "--epochs", "2", *ema)
    _train(data, tmp_path / "w" / "b", tmp_path / "b", "--epochs", "1", *ema)
    saved = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    average = {k.removeprefix("module."): v for k, v in saved["averaged"].items()
               if k.startswith("module.")}
    assert saved["best_epoch"] == 1 and saved["best_model"].keys() == average.keys()
    assert all(torch.equal(saved["best_model"][k], average[k]) for k in average)
    assert any(not torch.equal(saved["model"][k], average[k]) for k in average
               if average[k].is_floating_point())
    resumed = _train(data, tmp_path / "w" / "b", tmp_path / "b", "--epochs", "2", "--resume", *ema)
    assert resumed.recipe["ema"] == 0.5
    first, second = (c.metrics["training"]["history"] for c in (straight, resumed))
    assert second[1]["val_loss"] == pytest.approx(first[1]["val_loss"], rel=1e-6)
    steps = int(saved["averaged"]["n_averaged"])
    again = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert steps > 1 and int(again["averaged"]["n_averaged"]) == 2 * steps


def test_a_fine_tune_that_never_beats_its_head_says_so(tmp_path: Path, capsys) -> None:
    data = make_image_folder(tmp_path / "data", per_class=8)
    card = _train(data, tmp_path / "out", tmp_path / "ckpt", "--epochs", "1",
                  "--warmup-epochs", "2", "--lr", "50")  # a fine-tuning rate that wrecks it
    training = card.metrics["training"]
    assert training["best_epoch"] <= 2 and training["best_stage"] == "head"
    assert "warning: no fine-tuning epoch beat epoch" in capsys.readouterr().out


def test_feature_regime_with_sampler(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", per_class=6)
    card = _train(data, tmp_path / "w" / "f", tmp_path / "f", "--regime", "feature",
                  "--epochs", "3", "--balance", "sampler", "--lr", "1e-2")
    assert {row["stage"] for row in card.metrics["training"]["history"]} == {"head"}
    assert card.recipe["regime"] == "feature" and card.recipe["balance"] == "sampler"


def test_recipe_flags_override_presets() -> None:
    args = train.build_parser().parse_args(["--data", "x", "--modality", "mri", "--recipe",
                                            "brain-mri-2024", "--lr", "3e-4", "--no-hflip",
                                            "--ratios", "7:2:1"])
    recipe = train.resolve_recipe(args)
    assert (recipe.lr, recipe.hflip, recipe.ratios) == (3e-4, False, (7.0, 2.0, 1.0))
    assert (recipe.dropout, recipe.preprocessing, recipe.rotation) == (0.4, "brain_mri", 10)


def test_one_epoch_on_real_subset(shared_data: Path, tmp_path: Path) -> None:
    """A few real brain MRIs per class through brain_mri preprocessing, into the registry."""
    card = _train_real(shared_data, tmp_path)
    assert card.preprocessing == "brain_mri" and card.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert card.split["counts"]["test"] == dict.fromkeys(card.classes, 1)
    load_model(tmp_path / "w" / "mri-tiny", device="cpu")


def _train_real(shared_data: Path, tmp_path: Path) -> ModelCard:
    out = tmp_path / "w" / "mri-tiny"
    assert train.main(["--data", str(shared_data / "brain-tumor-mri"), "--modality", "mri",
                       "--recipe", "brain-mri-2024", "--max-per-class", "4", "--epochs", "1",
                       "--out", str(out), "--checkpoint-dir", str(tmp_path / "ck"), *TINY]) == 0
    return ModelCard.read(out)


@pytest.mark.slow
def test_torchrun_two_processes_save_once(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "data", per_class=6)
    weights = tmp_path / "weights"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
               "-m", "training.train", "--data", str(data), "--modality", "histology",
               "--out", str(weights / "ddp"), "--checkpoint-dir", str(tmp_path / "ck"),
               "--epochs", "1", "--warmup-epochs", "1", "--device", "cpu", *TINY]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cards = list(weights.glob("*/card.json"))
    assert len(cards) == 1 and done.stdout.count("saved ") == 1
    card = ModelCard.read(cards[0])
    assert card.recipe["world_size"] == 2 and card.recipe["command"].startswith("torchrun --nproc_per_node 2")
    assert torch.isfinite(torch.tensor(card.metrics["training"]["history"][-1]["train_loss"]))


def test_card_carries_fitted_trust_signals(generated) -> None:
    _, weights, card = generated
    folder = weights / "histo-tiny"
    assert card.trust["file"] == "trust.safetensors"
    from models.registry import sha256_bytes

    assert sha256_bytes((folder / "trust.safetensors").read_bytes()) == card.trust["sha256"]
    assert card.trust["ood"]["threshold"] > 0 and 0 <= card.trust["uncertainty"]["entropy_threshold"] <= 1
    assert {"uncertain_fraction", "accuracy_certain", "ood_flagged_fraction"} <= set(card.trust["test"])
    assert "class_thresholds" not in card.trust["ood"]  # one threshold: not a router


def test_prediction_is_held_to_its_class_threshold(generated) -> None:
    """An image is in distribution when its score is within the threshold of the class it is
    predicted as, whatever the other classes' thresholds."""
    from models.predict import predict

    data, weights, _ = generated
    loaded = load_model(weights / "histo-tiny", device="cpu")
    rgb = np.asarray(Image.open(next((data / "beta").iterdir())).convert("RGB"))
    first = predict(loaded, rgb)
    for own, other, inside in ((first.ood_score + 1, 0.0, True), (first.ood_score - 1e-3, 9.0, False)):
        limits = [other] * len(loaded.card.classes)
        limits[first.index] = own
        loaded.guard.class_thresholds = tuple(limits)
        again = predict(loaded, rgb)
        assert again.index == first.index and again.in_distribution is inside, own


def test_bad_input_is_one_error_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert train.main(["--data", str(tmp_path / "missing"), "--modality", "mri"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no dataset at")


def test_existing_model_needs_force_and_default_is_unique(generated, tmp_path: Path, capsys) -> None:
    data, weights, card = generated
    assert card.default
    assert train.main(["--data", str(data), "--modality", "histology", "--out",
                       str(weights / "histo-tiny"), "--checkpoint-dir", str(tmp_path / "c"),
                       *TINY]) == 2
    assert "pass --force" in capsys.readouterr().err
    rival = _train(data, weights / "histo-rival", tmp_path / "r", "--epochs", "1",
                   "--warmup-epochs", "0", "--default")
    assert rival.default and not ModelCard.read(weights / "histo-tiny").default
    from models.registry import find_card

    assert find_card("histology", weights)[0].name == "histo-rival"


def test_several_sources_make_one_split_and_the_card_names_them(tmp_path: Path) -> None:
    first = make_image_folder(tmp_path / "one", per_class=5, seed=1)
    second = make_image_folder(tmp_path / "two", per_class=5, seed=2)
    out = tmp_path / "w" / "both"
    assert train.main(["--data", str(first), str(second), "--modality", "histology", "--out",
                       str(out), "--checkpoint-dir", str(tmp_path / "c"), "--epochs", "1",
                       "--warmup-epochs", "0", "--lr-warmup-epochs", "1", "--schedule", "cosine",
                       *TINY]) == 0
    card = ModelCard.read(out)
    assert [s["images"] for s in card.data["sources"]] == [15, 15] and card.data["images"] == 30
    assert {f.split("/")[0] for f in card.split["test_files"]} <= {"one", "two"}


def test_router_trains_on_fixed_label_sources(tmp_path: Path) -> None:
    mri = make_image_folder(tmp_path / "mri-like", per_class=4, seed=1)
    xray = make_image_folder(tmp_path / "xray-like", per_class=4, seed=2)
    out = tmp_path / "w" / "router"
    assert train.main(["--router", "--data", f"{mri}=mri", f"{xray}=xray", "--out", str(out),
                       "--checkpoint-dir", str(tmp_path / "c"), "--regime", "feature",
                       "--epochs", "1", *TINY]) == 0
    card = ModelCard.read(out)
    assert (card.kind, card.modality, card.classes) == ("router", "any", ["mri", "xray"])
    # A router's guard has a threshold per class (here each falls back to the global one: a
    # few validation images per class), and the registry loads them.
    ood = card.trust["ood"]
    assert ood["class_thresholds"] == dict.fromkeys(card.classes, ood["threshold"])
    assert load_model(out, device="cpu").guard.class_thresholds == (ood["threshold"],) * 2
    from models.registry import find_router

    assert find_router(tmp_path / "w") == out
    assert train.main(["--router", "--data", f"{mri}=lungs", "--out", str(tmp_path / "w" / "bad"),
                       *TINY]) == 2


def test_lr_warmup_then_cosine() -> None:
    from training.recipes import RECIPES

    recipe = RECIPES["default"].override(lr=1.0, lr_warmup_epochs=2, schedule="cosine")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    from training.loop import lr_scheduler

    scheduler = lr_scheduler(optimizer, recipe, epochs=6)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.1) and rates[1] < rates[2] == pytest.approx(1.0)
    assert rates[2] > rates[3] > rates[4] > rates[5] > 0


def test_external_sources_are_scored_into_the_card(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "home", per_class=6, seed=1)
    other = make_image_folder(tmp_path / "elsewhere", per_class=3, seed=9)
    card = _train(data, tmp_path / "w" / "ext", tmp_path / "c", "--epochs", "1",
                  "--warmup-epochs", "0", "--external", str(other))
    external = card.metrics["external"]
    assert external["n"] == 9 and 0 <= external["accuracy"] <= 1
    low, high = external["accuracy_ci95"]
    assert low <= external["accuracy"] <= high
    from models.card import headline

    assert "external" in headline(card).sentence

    from training import calibrate

    folder = tmp_path / "w" / "ext"  # recalibrating re-scores the external sources it names
    rewrite_card(folder, metrics={**card.metrics, "external": {**external, "n": 0}})
    assert calibrate.main(["--model", str(folder)]) == 0
    again = ModelCard.read(folder).metrics["external"]
    assert again["n"] == 9 and again["data"] == str(other)
    assert again["accuracy"] == evaluate.evaluate(load_model(folder, device="cpu"), other)["accuracy"]


def test_two_class_run_fits_a_decision_threshold_that_evaluate_applies(tmp_path, capsys) -> None:
    data = make_image_folder(tmp_path / "data", per_class=8)
    sources = [data / "alpha=negative", data / "beta=positive"]
    card = _train(sources[0], tmp_path / "out", tmp_path / "ckpt", "--data", str(sources[1]),
                  "--epochs", "1", "--warmup-epochs", "1")
    assert card.classes == ["negative", "positive"]
    assert card.decision_threshold == card.metrics["calibration"]["decision_threshold"]
    capsys.readouterr()
    assert evaluate.main(["--data", *map(str, sources), "--model", "out", "--weights-dir",
                          str(tmp_path), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["confusion_matrix"] == card.metrics["confusion_matrix"]


def _train_endoscopy(data: Path, out: Path, *extra: str) -> ModelCard:
    assert train.main(["--data", str(data), "--modality", "endoscopy", "--out", str(out),
                       "--checkpoint-dir", str(out.parent.parent / "ck" / out.name), *TINY,
                       "--epochs", "1", "--warmup-epochs", "0", *extra]) == 0
    return ModelCard.read(out)


def test_default_is_unique_per_modality_and_task(tmp_path: Path, capsys) -> None:
    from models.registry import find_card

    data = make_image_folder(tmp_path / "data", per_class=4)
    weights = tmp_path / "w"
    capsule = _train_endoscopy(data, weights / "capsule", "--default")
    assert capsule.task == "capsule-bleeding"
    raw = json.loads((weights / "capsule" / "card.json").read_text())
    raw.pop("task")  # as written before cards had a task
    (weights / "capsule" / "card.json").write_text(json.dumps(raw))
    first = _train_endoscopy(data, weights / "colonoscopy-a", "--task", "colonoscopy-polyp",
                             "--default")
    assert first.task == "colonoscopy-polyp" and ModelCard.read(weights / "capsule").default
    _train_endoscopy(data, weights / "colonoscopy-b", "--task", "colonoscopy-polyp", "--default")
    assert "colonoscopy-a is no longer the default endoscopy model for colonoscopy-polyp" in \
        capsys.readouterr().out
    assert not ModelCard.read(weights / "colonoscopy-a").default
    assert ModelCard.read(weights / "capsule").default
    assert find_card("endoscopy", weights)[0].name == "capsule"
    assert find_card("endoscopy", weights, "colonoscopy-polyp")[0].name == "colonoscopy-b"


@pytest.mark.parametrize(("argv", "message"), [
    (["--modality", "mri", "--task", "colonoscopy-polyp"], "reads endoscopy images, not mri"),
    (["--router", "--task", "colonoscopy-polyp"], "--task is for diagnosis models"),
])
def test_a_task_must_fit_the_model(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    data = make_image_folder(tmp_path / "data", per_class=2)
    assert train.main(["--data", f"{data}=mri", *argv, "--out", str(tmp_path / "x"), *TINY]) == 2
    assert message in capsys.readouterr().err


def test_router_classes_may_name_tasks(tmp_path: Path) -> None:
    capsule = make_image_folder(tmp_path / "capsule-like", per_class=4, seed=1)
    colon = make_image_folder(tmp_path / "colon-like", per_class=4, seed=2)
    out = tmp_path / "w" / "router"
    assert train.main(["--router", "--data", f"{capsule}=capsule-bleeding",
                       f"{colon}=colonoscopy-polyp", "--out", str(out), "--checkpoint-dir",
                       str(tmp_path / "c"), "--regime", "feature", "--epochs", "1", *TINY]) == 0
    card = ModelCard.read(out)
    assert (card.kind, card.task, card.classes) == ("router", "routing",
                                                    ["capsule-bleeding", "colonoscopy-polyp"])
    assert [s["images"] for s in card.data["sources"]] == [12, 12]


def test_colonoscopy_run_on_real_frames(shared_data: Path, tmp_path: Path, capsys) -> None:
    """Real polyp and non-polyp frames, masked and grouped as the shipped recipe does, into the
    registry; ``evaluate --model`` on the card's test split reproduces its figures."""
    sources = [f"{shared_data / 'kvasir-seg' / 'images'}=polyp",
               f"{shared_data / 'hyperkvasir-lower-gi'}=non-polyp"]
    weights = tmp_path / "w"
    assert train.main(["--data", *sources, "--modality", "endoscopy", "--task",
                       "colonoscopy-polyp", "--preprocessing", "mask_frame", "--min-correlation",
                       "0.93", "--max-per-class", "8", "--epochs", "1", "--out",
                       str(weights / "colonoscopy-tiny"), "--checkpoint-dir", str(tmp_path / "c"),
                       *TINY]) == 0
    card = ModelCard.read(weights / "colonoscopy-tiny")
    assert (card.task, card.preprocessing, card.classes) == ("colonoscopy-polyp", "mask_frame",
                                                             ["non-polyp", "polyp"])
    assert card.split["group_rule"]["min_correlation"] == 0.93
    assert "thumbnail correlation" in card.split["grouping"]
    assert [s["images"] for s in card.data["sources"]] == [8, 8]
    assert {"per_class", "confusion_matrix"} <= set(card.metrics["val"])
    capsys.readouterr()
    assert evaluate.main(["--data", *sources, "--model", "colonoscopy-tiny", "--weights-dir",
                          str(weights), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "colonoscopy-tiny" and report["n"] == card.metrics["n"]
    assert report["confusion_matrix"] == card.metrics["confusion_matrix"]
    assert report["per_class"]["polyp"]["sensitivity"] == pytest.approx(
        card.metrics["per_class"]["polyp"]["sensitivity"])


def test_validation_folds_pool_every_non_test_image_once(generated, tmp_path: Path, capsys) -> None:
    """``--val-folds`` runs of one recipe share the test split and validate on disjoint folds;
    ``training.crossval`` pools them into one row per recipe, over every non-test image."""
    from training import crossval

    data, weights, plain = generated
    quick = ("--epochs", "1", "--warmup-epochs", "0", "--val-folds", "2", "--hflip")
    runs = [tmp_path / name for name in ("a0", "a1", "b0")]
    cards = [_train(data, runs[0], tmp_path / "c0", *quick, "--val-fold", "0"),
             _train(data, runs[1], tmp_path / "c1", *quick, "--val-fold", "1"),
             _train(data, runs[2], tmp_path / "c2", *quick, "--val-fold", "0", "--lr", "1e-2")]
    assert {c.split["test_sha256"] for c in cards} == {plain.split["test_sha256"]}
    non_test = sum(sum(plain.split["counts"][part].values()) for part in ("train", "val"))
    capsys.readouterr()
    assert crossval.main([*map(str, runs), "--json"]) == 0
    first, other = json.loads(capsys.readouterr().out)
    assert first["complete"] and first["n"] == non_test and first["folds"] == [0, 1]
    assert first["errors"] == sum(first["fold_errors"])
    assert first["errors"] == round(sum(c.metrics["val"]["n"] * (1 - c.metrics["val"]["accuracy"])
                                        for c in cards[:2]))
    assert not other["complete"] and other["recipe"].startswith("lr=0.01")
    # the decision-view candidates (image alone, crops, the hflip the runs trained with) pooled
    views = first["views"]
    assert views["image"]["nll"] == pytest.approx(sum(
        c.metrics["val"]["n"] * c.metrics["calibration"]["test_time_views"]["candidates"][0]["nll"]
        for c in cards[:2]) / non_test)
    assert {"image + 0.9 crop", "image + hflip", "image + 0.9 crop + 0.8 crop + hflip"} <= set(views)
    assert views["image"]["largest_shifted_loss"]["loss"] == 0 and not views["image"]["vetoed"]
    assert all(v["largest_shifted_loss"]["shift"] in SHIFTS for v in views.values())
    assert crossval.main([str(runs[0]), str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert crossval.main([str(weights / "histo-tiny")]) == 2
    assert "not a --val-folds run" in capsys.readouterr().err

    # a run of the recipe recalibrated on the pooled folds decides on their choice, fitting only
    # T on its own split (no shift passes), and evaluate reproduces its figures
    import shutil

    from training import calibrate

    model = tmp_path / "a0-pooled"
    shutil.copytree(runs[0], model)
    capsys.readouterr()
    assert calibrate.main(["--model", str(model), "--views-from", *map(str, runs[:2])]) == 0
    printed = capsys.readouterr()
    assert "under" not in printed.err and f"(validation log-loss pooled over {non_test} images, " \
        in printed.out
    card = ModelCard.read(model)
    choice = card.metrics["calibration"]["test_time_views"]
    assert choice["pooled"]["folds"] == [0, 1] and choice["pooled"]["n"] == non_test
    for run, named in zip(runs[:2], choice["pooled"]["runs"], strict=True):
        trained = ModelCard.read(run)  # each run by what it is, not by where it lay
        assert named == {"run": run.name, "val_fold": trained.split["val_fold"],
                         "n": trained.metrics["val"]["n"], "code_version": trained.code_version,
                         "sha256": trained.sha256}
    assert choice["chosen"] == {"crops": card.test_time_crops, "flips": card.test_time_flips}
    assert [c["nll"] for c in choice["candidates"]] == pytest.approx([v["nll"] for v in views.values()])
    assert "pooled over the" in choice["rule"]
    assert evaluate.main(["--data", str(data), "--model", str(model), "--split", "test",
                          "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(card.metrics["accuracy"])
    # another recipe's folds, or runs of two recipes, are refused
    assert calibrate.main(["--model", str(weights / "histo-tiny"), "--views-from",
                           *map(str, runs[:2])]) == 2
    assert "recipe differs from histo-tiny's in ['warmup_epochs']" in capsys.readouterr().err
    assert calibrate.main(["--model", str(model), "--views-from", *map(str, runs)]) == 2
    assert "2 recipes, not one" in capsys.readouterr().err
