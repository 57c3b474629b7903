"""Attention supervision: the class activation map it trains is the map Grad-CAM shows, masks
move with their images, the loss pulls maps toward the masks, and a real run records it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.card import ModelCard
from models.zoo import build_model, get_arch
from training import train
from training.attention import RegionSupervision
from training.augment import Augment
from training.recipes import RECIPES
from xai import explain_view

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _tiny(classes: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", classes).eval()


def test_the_trained_map_is_the_grad_cam_the_app_shows(tiny_registry: Path) -> None:
    """On a GAP + linear network, Grad-CAM at the last layer is the CAM of the class (Zhou et
    al. 2016) up to scale: what the loss shapes is what the clinician sees."""
    from models.registry import load_model

    loaded = load_model(tiny_registry / "tiny-mri-resnet18", device="cpu")
    view = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    explained, = explain_view(loaded, view, methods=["gradcam"], targets=[2])
    shown = explained.maps["gradcam"].map
    from models.predict import view_to_input

    supervision = RegionSupervision(loaded.model, loaded.arch.target_layer, loaded.arch.head)
    with supervision, torch.no_grad():
        loaded.model(view_to_input(loaded, view))
        cam = F.relu(supervision.maps(torch.tensor([2])))[0].numpy()
    cam = cv2.resize(cam, shown.shape[::-1], interpolation=cv2.INTER_LINEAR)
    assert np.corrcoef(cam.ravel(), shown.ravel())[0, 1] > 0.99


def test_regions_move_with_their_images() -> None:
    """A bright square and its mask, through rotation, shift, flips and crops: the moved mask
    still covers the moved square and nothing else."""
    image = torch.zeros(8, 3, 48, 48, dtype=torch.uint8)
    image[:, :, 10:22, 26:40] = 255
    regions = torch.zeros(8, 48, 48)
    regions[:, 10:22, 26:40] = 1
    recipe = RECIPES["default"].override(rotation=25, shift=0.1, hflip=True, vflip=True,
                                         crop_scale=0.6, brightness_alpha=0.3)
    torch.manual_seed(0)
    x, moved = Augment(recipe, MEAN, STD).with_regions(image, regions)
    bright = x.mean(1) > 0.3
    inside = moved > 0.5
    for i in range(8):
        overlap = (bright[i] & inside[i]).sum() / (bright[i] | inside[i]).sum()
        assert overlap > 0.8, i
    assert not torch.equal(moved[0], moved[1])  # each image its own geometry
    torch.manual_seed(0)
    assert torch.equal(Augment(recipe, MEAN, STD)(image), x)  # the same images as forward
    trivial = Augment(recipe.override(auto_augment="trivial"), MEAN, STD)
    with pytest.raises(ValueError, match="TrivialAugment"):
        trivial.with_regions(image, regions)


def test_the_loss_pulls_the_map_into_the_region_and_ignores_unannotated_images() -> None:
    model = _tiny().train()
    spec = get_arch("resnet18")
    x = torch.rand(4, 3, 64, 64)
    labels = torch.tensor([1, 1, 0, 0])
    regions = torch.zeros(4, 64, 64)
    regions[:2, :24, :24] = 1  # two annotated images, top-left; two without a region
    supervision = RegionSupervision(model, spec.target_layer, spec.head)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    with supervision:
        for _ in range(25):
            model(x)
            loss = supervision.loss(labels, regions)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            model(x)
            cams = F.relu(supervision.maps(labels))
    assert losses[-1] < 0.3 * losses[0]
    inside = cams[:2, :1, :1].mean()  # the top-left cells of a 2 x 2 grid
    assert inside > 2 * cams[:2].mean() - inside
    model(x)  # outside `with`: nothing recorded any more
    with pytest.raises(RuntimeError, match="no forward pass"):
        supervision.maps(labels)
    with supervision:
        model(x)
        assert supervision.loss(labels, torch.zeros(4, 64, 64)).item() == 0.0


def test_a_head_that_does_not_pool_the_layer_is_refused_before_training() -> None:
    model = build_model("vgg16", 2).eval()
    spec = get_arch("vgg16")
    supervision = RegionSupervision(model, spec.target_layer, spec.head)
    with pytest.raises(ValueError, match="linear head pools"):
        supervision.check(torch.rand(1, 3, 64, 64), torch.tensor([0]))


def test_a_run_with_polyp_masks_records_them_and_reports_the_region_loss(
        shared_data: Path, tmp_path: Path, capsys) -> None:
    sources = [f"{shared_data / 'kvasir-seg' / 'images'}=polyp",
               f"{shared_data / 'hyperkvasir-lower-gi'}=non-polyp"]
    out = tmp_path / "w" / "colonoscopy-tiny"
    common = ["--data", *sources, "--modality", "endoscopy", "--task", "colonoscopy-polyp",
              "--preprocessing", "mask_frame", "--max-per-class", "8", "--epochs", "1",
              "--arch", "resnet18", "--pretrained", "none", "--input-size", "64",
              "--batch-size", "8", "--ratios", "2:1:1", "--threads", "1", "--out", str(out),
              "--checkpoint-dir", str(tmp_path / "c")]
    assert train.main([*common, "--region-masks", str(shared_data / "kvasir-seg" / "masks"),
                       "--region-weight", "2"]) == 0
    card = ModelCard.read(out)
    assert card.data["region_masks"]["images"] == 8 and card.recipe["region_weight"] == 2
    full = [row for row in card.metrics["training"]["history"] if row["stage"] == "full"]
    assert full and all(row["region_loss"] > 0 for row in full)
    # its maps scored on the validation masks (the split rebuilt from the card), not the test's
    from xai.localize import run_localization

    scored = {}
    for split in ("val", "test"):
        summary = run_localization(None, shared_data / "kvasir-seg" / "images",
                                   shared_data / "kvasir-seg" / "masks", model=out, split=split,
                                   methods=["gradcam"], region="mask", progress=False)
        scored[split] = {row["file"] for row in summary["per_image"]}
    tested = {Path(f).name for f in card.split["test_files"] if f.startswith("kvasir-seg")}
    assert scored["test"] == tested and len(scored["val"]) == 2 and not scored["val"] & tested
    capsys.readouterr()
    assert train.main([*common, "--force", "--region-masks", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.startswith("error: region mask folder")
    assert train.main([*common, "--force", "--region-weight", "1"]) == 2
    assert "needs --region-masks" in capsys.readouterr().err
    json.dumps(card.recipe)  # the card stays plain JSON
