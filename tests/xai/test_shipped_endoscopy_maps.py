"""Real capsule bleeding frames with the shipped endoscopy model: the two Compare-page failures.

1. Insertion AUC was ~1 for every method (a blurred frame still reads as bleeding and the
   softmax saturates), so it could not tell a map on the lesion from its inverse.
2. DT Grad-CAM's noisy copies were no longer called "bleeding", so its map came out flat or
   made of noise (with no word on why).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from imaging import load_path
from models.registry import ModelUnavailable, load_for_modality
from xai import explain_loaded
from xai.compare import faithfulness
from xai.legend import map_notes


@pytest.fixture(scope="module")
def endoscopy():
    try:
        return load_for_modality("endoscopy", device="cpu")
    except ModelUnavailable as exc:
        pytest.skip(f"no endoscopy model installed: {exc}")


@pytest.fixture(scope="module")
def frames(shared_data: Path) -> list[np.ndarray]:
    masks = shared_data / "wce-bleeding-masks" / "bleeding"
    paths = [p for p in sorted((shared_data / "wce-bleeding" / "bleeding").glob("*.jpg"))
             if (masks / f"{p.stem}.png").exists()][:12]
    if len(paths) < 12:
        pytest.skip("fewer than 12 bleeding frames with masks in the shared data")
    return [load_path(p).rgb for p in paths]


def test_insertion_tells_a_map_from_its_inverse(endoscopy, frames) -> None:
    """Grad-CAM against its inverse, by the Compare page's score (insertion - deletion AUC).

    Not scored, as on the Compare page: a flat map (the region-supervised models' Grad-CAM for
    bleeding is flat on a few frames: negative evidence everywhere) and a frame whose mean-grey
    baseline scores bleeding within a log-odds of the frame itself (no evidence to order). At
    most a third of the frames are not scored; Grad-CAM wins on all scored frames but one (20
    steps on one frame are noisy), and its insertion AUC is higher on average by a margin."""
    scored, wins, gaps = 0, 0, []
    for rgb in frames:
        result = explain_loaded(endoscopy, rgb, methods=["gradcam"], target="bleeding")
        cam = result.maps["gradcam"]
        if cam.flat:
            continue
        inverse = replace(cam, name="inverse", label="inverse", map=1.0 - cam.map)
        good, bad = faithfulness(endoscopy, rgb, {"gradcam": cam, "inverse": inverse},
                                 result.target_index, steps=20)
        if not good.insertion.informative:
            assert not bad.insertion.informative  # the same two end images
            continue
        scored += 1
        wins += (good.insertion_auc - good.deletion_auc) > (bad.insertion_auc - bad.deletion_auc)
        gaps.append(good.insertion_auc - bad.insertion_auc)
    assert scored >= len(frames) * 2 // 3
    assert wins >= scored - 1, gaps
    # the size of the gap is the model's (0.2 to 0.6 for the models shipped so far): the
    # ordering above is the behaviour
    assert float(np.mean(gaps)) > 0.1, gaps


def test_dt_gradcam_keeps_the_decision_and_says_why_a_map_is_flat(endoscopy, frames) -> None:
    """Most maps keep the decision on their noisy copies and show the lesion; a map whose
    copies lost it, or a flat one (the region-supervised model has no positive bleeding
    evidence at the last layer on a few frames), says so on its tile."""
    drawn = 0
    for rgb in frames:
        result = explain_loaded(endoscopy, rgb, methods=["dt_gradcam"], target="bleeding")
        cam = result.maps["dt_gradcam"]
        notes = map_notes(cam, "bleeding")
        assert result.label == "bleeding" and cam.info["sigma"] <= 0.1
        if cam.info["kept"] < 0.5:  # the noise floor reached: the tile says what that means
            assert any(note.startswith("Only") for note in notes)
            continue
        if cam.flat:
            assert any(note.startswith("Flat map: nothing at layer") for note in notes)
        else:
            assert cam.mask is not None and cam.mask.any()
            drawn += 1
    assert drawn >= len(frames) // 2
