from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.predict import decide, predict, probabilities, to_input
from models.registry import load_for_modality

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], weights: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDXAI_WEIGHTS_DIR": str(weights)}
    return subprocess.run([sys.executable, "-m", "models.predict", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _png(tmp_path: Path, size: tuple[int, int] = (80, 60)) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "scan.png"
    Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(path)
    return path


def test_probabilities_softmax_and_single_logit() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    assert torch.allclose(probabilities(logits), torch.softmax(logits, 1))
    assert torch.allclose(probabilities(logits, 2.0), torch.softmax(logits / 2, 1))
    binary = probabilities(torch.tensor([[0.0], [10.0]]))
    assert torch.allclose(binary[0], torch.tensor([0.5, 0.5]))
    assert binary[1, 1] > 0.99


def test_predict_matches_a_manual_forward(tiny_registry: Path) -> None:
    loaded = load_for_modality("mri", tiny_registry, device="cpu")
    rgb = np.random.default_rng(1).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    x = to_input(loaded, rgb)
    assert x.shape == (1, 3, 64, 64)
    with torch.no_grad():
        expected = torch.softmax(loaded.model(x), 1)[0]
    result = predict(loaded, rgb)
    assert result.index == int(expected.argmax())
    assert result.label == loaded.card.classes[result.index]
    assert result.confidence == pytest.approx(float(expected.max()), abs=1e-6)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.latency_ms > 0
    from models.predict import model_view

    given = predict(loaded, rgb, view=model_view(loaded, rgb))  # preprocessed by the caller
    assert given.probabilities == pytest.approx(result.probabilities, abs=1e-6)
    other = predict(loaded, rgb, view=model_view(loaded, rgb[::-1]))  # control: the view counts
    assert other.probabilities != pytest.approx(result.probabilities, abs=1e-6)


def test_decide_applies_a_two_class_threshold_to_torch_and_numpy() -> None:
    probs = torch.tensor([[0.7, 0.3], [0.55, 0.45], [0.2, 0.8]])
    assert decide(probs).tolist() == [0, 0, 1]
    assert decide(probs, 0.4).tolist() == [0, 1, 1]
    assert decide(probs.numpy(), 0.4).tolist() == [0, 1, 1]
    three = torch.tensor([[0.2, 0.3, 0.5]])
    assert decide(three, 0.1).tolist() == [2]  # only two-class models have a threshold


def test_predict_follows_the_cards_decision_threshold(tiny_registry: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    loaded = load_for_modality("xray", tiny_registry, device="cpu")
    rgb = np.random.default_rng(2).integers(0, 255, (90, 90, 3), dtype=np.uint8)
    plain = predict(loaded, rgb, views=False)
    second = plain.probabilities[loaded.card.classes[1]]
    for cut, expected in ((max(second - 0.01, 0.001), 1), (min(second + 0.01, 0.999), 0)):
        card = replace(loaded.card, decision_threshold=cut)
        result = predict(replace(loaded, card=card), rgb, views=False)
        assert result.index == expected and result.label == loaded.card.classes[expected]
        assert result.confidence == pytest.approx(result.probabilities[result.label])


def test_cli_json(tiny_registry: Path, tmp_path: Path) -> None:
    proc = _run([str(_png(tmp_path)), "--modality", "xray", "--json"], tiny_registry)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"modality", "model", "label", "confidence", "probabilities", "latency_ms"} <= set(out)
    assert out["modality"] == "xray" and out["label"] in ("normal", "pneumonia")
    assert out["confidence"] == max(out["probabilities"].values())


def test_cli_text_output_lists_all_classes(tiny_registry: Path, tmp_path: Path) -> None:
    proc = _run([str(_png(tmp_path)), "--modality", "mri"], tiny_registry)
    assert proc.returncode == 0, proc.stderr
    for name in ("glioma", "meningioma", "notumor", "pituitary"):
        assert name in proc.stdout
    assert "not a diagnosis" in proc.stdout


def test_cli_takes_modality_from_dicom_tag(tiny_registry: Path, tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    source = get_testdata_file("MR_small.dcm")
    ds = dcmread(source)
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    proc = _run([str(path), "--json"], tiny_registry)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["modality"] == "mri"


def _assert_one_error_line(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_asks_for_modality_when_it_cannot_tell(tiny_registry: Path, tmp_path: Path) -> None:
    _assert_one_error_line(_run([str(_png(tmp_path))], tiny_registry), "--modality")


def test_cli_corrupt_file(tiny_registry: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG")
    path = tmp_path / "broken.png"
    path.write_bytes(buf.getvalue()[:40])
    _assert_one_error_line(_run([str(path), "--modality", "mri"], tiny_registry), "error")


def test_cli_no_model_installed(tiny_registry: Path, tmp_path: Path) -> None:
    _assert_one_error_line(_run([str(_png(tmp_path)), "--modality", "histology"], tiny_registry),
                           "no model is installed")


def test_cli_missing_file(tiny_registry: Path, tmp_path: Path) -> None:
    _assert_one_error_line(_run([str(tmp_path / "nope.png"), "--modality", "mri"], tiny_registry),
                           "nope.png")


@pytest.mark.parametrize(("crops", "flips"), [([0.8], []), ([], ["hflip", "rot180"]),
                                              ([0.9], ["vflip"])])
def test_a_card_with_decision_views_decides_on_the_mean_logit_everywhere(
        tiny_registry: Path, tmp_path: Path, crops: list[float], flips: list[str]) -> None:
    """Predict, evaluate and the explanation all give the decision of a card's test-time crops
    and flips: softmax of the mean logit of the image and those views, over T."""
    from models.predict import model_view
    from models.registry import load_model
    from models.trust import centre_crop
    from tests.conftest import copy_entry, rewrite_card
    from training.evaluate import model_probabilities
    from xai.engine import explain_loaded, explain_view

    folder = copy_entry(tiny_registry, tmp_path)
    rewrite_card(folder, test_time_crops=crops, test_time_flips=flips, temperature=2.0)
    loaded = load_model(folder, device="cpu")
    rgb = np.random.default_rng(4).integers(0, 255, (90, 90, 3), dtype=np.uint8)
    x = to_input(loaded, rgb)
    dims = {"hflip": (3,), "vflip": (2,), "rot180": (2, 3)}
    with torch.no_grad():
        views = [x, *(centre_crop(x, keep) for keep in crops), *(x.flip(dims[f]) for f in flips)]
        mean = torch.stack([loaded.model(v) for v in views]).mean(0)
        alone = torch.softmax(loaded.model(x) / 2.0, 1)[0]
    expected = torch.softmax(mean / 2.0, 1)[0].tolist()
    assert expected != pytest.approx(alone.tolist(), abs=1e-4)  # control: the views count

    result = predict(loaded, rgb)
    assert list(result.probabilities.values()) == pytest.approx(expected, abs=1e-5)
    assert result.index == int(np.argmax(expected))
    quiet = predict(loaded, rgb, views=False)
    assert list(quiet.probabilities.values()) == pytest.approx(expected, abs=1e-5)
    view = torch.from_numpy(model_view(loaded, rgb)).permute(2, 0, 1)[None]
    assert model_probabilities(loaded, view)[0].tolist() == pytest.approx(expected, abs=1e-5)
    explanation = explain_loaded(loaded, rgb, methods=["gradcam"])
    assert explanation.predicted_index == result.index == explanation.target_index
    assert explanation.probabilities.tolist() == pytest.approx(expected, abs=1e-5)

    # the prediction already made is reused: the explanation then runs one forward pass, not two
    passes = []
    hook = loaded.model.register_forward_hook(lambda *_: passes.append(1))
    try:
        view = model_view(loaded, rgb)
        alone, = explain_view(loaded, view, methods=["gradcam"])
        computed = len(passes)
        reused, = explain_view(loaded, view, methods=["gradcam"], decision=result)
    finally:
        hook.remove()
    assert (computed, len(passes) - computed) == (2, 1)
    assert reused.predicted_index == alone.predicted_index == result.index
    assert reused.probabilities.tolist() == pytest.approx(alone.probabilities.tolist(), abs=1e-6)
    np.testing.assert_allclose(reused.maps["gradcam"].map, alone.maps["gradcam"].map, atol=1e-6)


def test_decision_crops_are_shares_of_the_side_and_flips_known_names(tiny_registry: Path, tmp_path: Path) -> None:
    from models.card import CardError, ModelCard
    from tests.conftest import copy_entry, rewrite_card

    folder = copy_entry(tiny_registry, tmp_path)
    for bad in ([1.0], [0.2], ["0.9"]):
        rewrite_card(folder, test_time_crops=bad)
        with pytest.raises(CardError, match="test_time_crops"):
            ModelCard.read(folder)
    rewrite_card(folder, test_time_crops=[])
    for bad in (["mirror"], ["hflip", "hflip"]):
        rewrite_card(folder, test_time_flips=bad)
        with pytest.raises(CardError, match="test_time_flips"):
            ModelCard.read(folder)
