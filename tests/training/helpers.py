"""Generated image folders for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("alpha", "beta", "gamma")


def make_image_folder(root: Path, per_class: int = 8, size: int = 40, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: noisy images whose mean colour depends on the class."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            image[..., c] += 120
            Image.fromarray(image).save(folder / f"{name}_{i:02d}.png")
    return root
