"""The xai command lines: outputs, JSON, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import kvasir_test_split, register_tiny_colonoscopy
from xai.explain import main as explain_main
from xai.localize import ideal_map_scores
from xai.localize import main as localize_main


def _write_image(path: Path, seed: int, grey: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (80, 96) if grey else (80, 96, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_explain_writes_overlays_grid_and_json(tiny_registry: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    image = _write_image(tmp_path / "chest.png", 0, grey=True)
    out = tmp_path / "out"
    code = explain_main([str(image), "--modality", "xray", "--weights-dir", str(tiny_registry),
                         "--methods", "gradcam,haycam+,stages,dt_gradcam", "--target", "pneumonia",
                         "--out", str(out), "--json", "--contour"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["label"] in ("normal", "pneumonia") and 0 < result["confidence"] <= 1
    assert result["target"] == "pneumonia"
    assert list(result["methods"]) == ["gradcam", "haycam_plus", "gradcam_stage3",
                                       "gradcam_stage4", "gradcam_fused", "dt_gradcam"]
    for entry in result["methods"].values():
        assert entry["ms"] >= 0 and Path(entry["file"]).is_file()
        assert cv2.imread(entry["file"]).shape == (64, 64, 3)
    assert Path(result["grid"]).is_file()
    assert result["methods"]["haycam_plus"]["info"]["n_components"] >= 1


def test_explain_text_output(tiny_registry: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    image = _write_image(tmp_path / "brain.jpg", 1)
    code = explain_main([str(image), "--modality", "mri", "--weights-dir", str(tiny_registry),
                         "--methods", "single_pass", "--out", str(tmp_path / "o")])
    assert code == 0
    text = capsys.readouterr().out
    assert "HayCAM+" in text and "grid:" in text
    assert len(list((tmp_path / "o").glob("brain_*.png"))) == 8


@pytest.mark.parametrize(("args", "message"), [
    (["missing.png"], "does not exist"),
    (["IMG", "--methods", "gradcam,nope"], "unknown method 'nope'"),
    (["IMG", "--target", "zebra"], "unknown target class 'zebra'"),
    (["IMG", "--alpha", "3"], "--alpha"),
    (["IMG", "--options", "{bad"], "--options"),
    (["IMG", "--modality", "histology"], "no usable model for histology"),
])
def test_explain_bad_input(args: list[str], message: str, tiny_registry: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    image = _write_image(tmp_path / "x.png", 2)
    argv = [str(image) if a == "IMG" else (str(tmp_path / a) if a == "missing.png" else a)
            for a in args]
    if "--modality" not in argv:
        argv += ["--modality", "xray"]
    code = explain_main([*argv, "--weights-dir", str(tiny_registry), "--out", str(tmp_path)])
    assert code == 2
    assert message in _one_error_line(capsys)


def test_explain_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        explain_main(["image.png"])  # --out missing
    assert exc.value.code == 2
    assert "--out" in _one_error_line(capsys)


def _dataset(root: Path) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(3):
        _write_image(images / f"img{i}.jpg", i)
        if i < 2:
            mask = np.zeros((80, 96), np.uint8)
            mask[10:50, 20:70] = 255
            cv2.imwrite(str(masks / f"img{i}.png"), mask)
    (images / "notes.txt").write_text("not an image")
    return images, masks


def test_localize_json(tiny_registry: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    images, masks = _dataset(tmp_path)
    code = localize_main(["--images", str(images), "--masks", str(masks), "--modality", "xray",
                          "--weights-dir", str(tiny_registry), "--methods", "gradcam,eigencam",
                          "--target", "normal", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["images"] == 2 and result["unpaired"] == ["img2.jpg"]
    assert result["target"] == "normal"
    assert set(result["methods"]) == {"gradcam", "eigencam"}
    for scores in result["methods"].values():
        assert set(scores) == {"iou", "dice", "pointing", "energy", "ms"}
        assert 0 <= scores["iou"] <= 1 and 0 <= scores["dice"] <= 1
    assert len(result["per_image"]) == 2
    share = 40 * 50 / (80 * 96)  # the masks' box over the frame
    assert result["whole_frame"] == pytest.approx(
        {"iou": share, "dice": 2 * share / (1 + share), "pointing": share, "energy": share})
    grid = tuple(result["ideal_map"]["grid"])
    assert len(grid) == 2 and min(grid) >= 1
    mask = cv2.imread(str(masks / "img0.png"), cv2.IMREAD_GRAYSCALE) > 127
    ideal = {k: v for k, v in result["ideal_map"].items() if k != "grid"}
    assert ideal == pytest.approx(ideal_map_scores(mask, grid))  # same mask for both images
    assert "localize" in captured.err  # tqdm progress bar on stderr


def test_ideal_map_is_the_ceiling_of_the_cam_resolution() -> None:
    frame = np.ones((64, 64), bool)
    assert ideal_map_scores(frame, (4, 4))["iou"] == 1.0  # uniform map -> whole frame
    quadrant = np.zeros((64, 64), bool)
    quadrant[:32, :32] = True  # exactly 2 x 2 of the 4 x 4 cells
    coarse, fine = ideal_map_scores(quadrant, (2, 2)), ideal_map_scores(quadrant, (8, 8))
    assert 0.25 < coarse["iou"] < fine["iou"] and fine["iou"] > 0.8
    assert fine["pointing"] == 1.0
    spot = np.zeros((64, 64), bool)
    spot[40:44, 40:44] = True  # far smaller than one cell of a 2 x 2 grid
    assert ideal_map_scores(spot, (2, 2))["iou"] < 0.1 < ideal_map_scores(spot, (32, 32))["iou"]


def test_localize_table_and_errors(tiny_registry: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    images, masks = _dataset(tmp_path)
    assert localize_main(["--images", str(images), "--masks", str(masks), "--modality", "mri",
                          "--weights-dir", str(tiny_registry), "--methods", "gradcam",
                          "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "IoU" in out and "gradcam" in out and out.startswith("1 images")
    assert "(whole frame)       0.2604" in out
    assert "(ideal " in out
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, message in [
        (["--images", str(empty), "--masks", str(masks)], "has a mask"),
        (["--images", str(tmp_path / "nope"), "--masks", str(masks)], "is not a folder"),
    ]:
        code = localize_main([*argv, "--modality", "xray", "--weights-dir", str(tiny_registry)])
        assert code == 2
        assert message in _one_error_line(capsys)
    code = localize_main(["--images", str(images), "--masks", str(masks), "--modality",
                          "endoscopy", "--weights-dir", str(tiny_registry)])
    assert code == 2 and "no usable model for endoscopy" in _one_error_line(capsys)


def test_localize_by_model_on_its_test_split(shared_data: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    names, split = kvasir_test_split(shared_data, 2)
    register_tiny_colonoscopy(tmp_path, split=split)
    kvasir = shared_data / "kvasir-seg"
    code = localize_main(["--images", str(kvasir / "images"), "--masks", str(kvasir / "masks"),
                          "--model", "colonoscopy-tiny", "--weights-dir", str(tmp_path),
                          "--split", "test", "--region", "mask", "--methods", "gradcam,eigencam",
                          "--target", "polyp", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["file"] for row in result["per_image"]] == names
    assert (result["model"], result["task"], result["split"], result["region"]) == (
        "colonoscopy-tiny", "colonoscopy-polyp", "test", "mask")
    # Kvasir-SEG masks are read as they are: white polyp on black
    shares = [np.mean(cv2.imread(str(kvasir / "masks" / n.replace(".jpg", ".png")), 0) > 127)
              for n in names]
    assert result["whole_frame"]["iou"] == pytest.approx(np.mean(shares))
    assert 0 < np.mean(shares) < 0.9


def test_localize_model_errors(shared_data: Path, tiny_registry: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    kvasir = shared_data / "kvasir-seg"
    folders = ["--images", str(kvasir / "images"), "--masks", str(kvasir / "masks")]
    assert localize_main([*folders, "--model", "colonoscopy-lite9",
                          "--weights-dir", str(tiny_registry)]) == 2
    assert "no model folder 'colonoscopy-lite9'" in _one_error_line(capsys)
    assert localize_main([*folders, "--model", "tiny-xray-resnet18", "--weights-dir",
                          str(tiny_registry), "--split", "test"]) == 2
    assert "records no test split" in _one_error_line(capsys)
    with pytest.raises(SystemExit) as stop:
        localize_main([*folders, "--model", "tiny-mri-resnet18", "--modality", "mri"])
    assert stop.value.code == 2 and "not allowed with" in _one_error_line(capsys)
