"""The studies' training recipes (cited per preset) as named, frozen presets.

A :class:`Recipe` fixes architecture, regime, preprocessing, hyper-parameters, augmentation and
split. ``python -m training.train --recipe NAME`` starts from one and every field can be
overridden by the flag of the same name (``--lr 3e-4``, ``--rotation 0`` ...). Values the papers
leave open are marked "our choice" below.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["CHOICES", "RECIPES", "REGIMES", "Recipe", "get_recipe"]

REGIMES = ("finetune", "feature", "scratch")
# The allowed values of the recipe's fields that are names.
CHOICES: dict[str, tuple[str, ...]] = {
    "regime": REGIMES, "normalisation": ("arch", "imagenet", "symmetric"),
    "optimizer": ("adam", "adamw", "sgd"), "schedule": ("constant", "step", "cosine"),
    "balance": ("loss", "sampler", "none"), "auto_augment": ("none", "trivial"),
}


@dataclass(frozen=True)
class Recipe:
    """Everything a training run needs besides data, output and seed.

    ``regime``: ``scratch`` (random init), ``feature`` (frozen backbone, head trained on cached
    backbone features) or ``finetune`` (all layers; ``warmup_epochs`` head-only epochs on the
    feature cache first, at ``head_lr``; ``train_from`` = a dotted module name limits fine-tuning
    to the parameters from that module on, in definition order, e.g. ``blocks.4`` for
    EfficientNet-Lite0: a CPU budget option). ``normalisation``: ``arch`` (the architecture's
    mean/std), ``imagenet`` or ``symmetric`` ([-1, 1]). ``schedule``: ``constant``, ``step``
    (x ``gamma`` every ``step_size`` epochs) or ``cosine``. ``balance``: class-weighted ``loss``,
    weighted ``sampler`` or ``none``. Augmentation: rotation in degrees, shift as a fraction of
    the side, flips, a random resized crop keeping ``crop_scale``..1 of the area (1: off), and
    brightness/contrast ``g = alpha * f + beta`` with
    ``alpha ~ U(1 - brightness_alpha, 1 + brightness_alpha)`` and
    ``beta ~ U(-brightness_beta, brightness_beta)`` on the [0, 1] scale; ``gamma_jitter``: ``f ** g``
    with ``log g ~ U(-gamma_jitter, gamma_jitter)``; ``blur``: the share of images Gaussian-blurred;
    ``sharpen``: sharpness factor ``s`` with ``log s ~ U(-log sharpen, log sharpen)`` (torchvision's
    ``adjust_sharpness``: 1 unchanged, > 1 sharper, < 1 softer; 0: off), against the resolution
    shift between upsampled training images and sharper original-resolution ones; ``jpeg``: each
    image re-encoded as JPEG at a quality drawn from ``jpeg``..95 (0: off);
    ``auto_augment``: ``trivial`` (TrivialAugment, Mueller & Hutter 2021) per image, or none.
    ``lr_warmup_epochs``: linear learning-rate warm-up at the start of fine-tuning, before the
    schedule. ``region_weight``: weight of the attention loss on images with a region mask
    (:mod:`training.attention`; 0: off). ``ema``: decay per fine-tuning step of an exponential
    moving average of the weights (Polyak & Juditsky 1992), which validation, early stopping and
    the exported model then use (0: off).
    ``ratios`` train:val:test, or ``folds`` > 0 for K-fold (fold ``fold`` is the test fold);
    ``val_folds`` > 0 keeps the ratio split's test part and validates on fold ``val_fold`` of the
    rest (:func:`training.data.make_split`).
    """

    name: str
    source: str
    arch: str
    regime: str = "finetune"
    preprocessing: str = "resize"
    input_size: int | None = None
    normalisation: str = "arch"
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    lr_warmup_epochs: int = 0
    step_size: int = 10
    gamma: float = 0.1
    dropout: float = 0.0
    warmup_epochs: int = 0
    train_from: str = ""
    patience: int = 10
    balance: str = "loss"
    label_smoothing: float = 0.0
    rotation: float = 0.0
    shift: float = 0.0
    hflip: bool = False
    vflip: bool = False
    brightness_alpha: float = 0.0
    brightness_beta: float = 0.0
    crop_scale: float = 1.0
    gamma_jitter: float = 0.0
    blur: float = 0.0
    sharpen: float = 0.0
    jpeg: int = 0
    auto_augment: str = "none"
    region_weight: float = 0.0
    ema: float = 0.0
    ratios: tuple[float, float, float] = (8.0, 1.0, 1.0)
    folds: int = 0
    fold: int = 0
    val_folds: int = 0
    val_fold: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"recipe {self.name}: {name} must be one of {allowed}")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"recipe {self.name}: epochs >= 0, batch_size >= 1, lr > 0 and "
                             "0 <= dropout < 1 are required")
        if (not 0 < self.crop_scale <= 1 or not 0 <= self.blur <= 1 or self.gamma_jitter < 0
                or self.region_weight < 0 or not 0 <= self.ema < 1
                or not (self.sharpen == 0 or self.sharpen >= 1) or not 0 <= self.jpeg <= 95):
            raise ValueError(f"recipe {self.name}: 0 < crop_scale <= 1, 0 <= blur <= 1, "
                             "gamma_jitter >= 0, region_weight >= 0, 0 <= ema < 1 and "
                             "sharpen 0 or >= 1 and jpeg 0-95 are required")

    def override(self, **changes: Any) -> Recipe:
        """A copy with the given fields changed (``None`` values are ignored)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown recipe fields: {sorted(unknown)}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for the model card."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe(
        name="default", source="our defaults (no study)", arch="tf_efficientnet_lite0",
        epochs=15, lr=3e-4, warmup_epochs=10, patience=5, rotation=10, shift=0.05, hflip=True,
    ),
    Recipe(
        name="kvasir-2023", source="Mukhtorov et al., Sensors 2023, 23(6):3176 (Kvasir, 8 classes)",
        arch="resnet152", epochs=100, batch_size=64, lr=1e-3, schedule="step", step_size=10,
        gamma=0.9, rotation=20, brightness_alpha=0.2, brightness_beta=0.1, patience=15,
        notes=("optimizer Adam, rotation 20 deg, alpha 0.8-1.2 and beta +-0.1: our choice",
               "no hue/colour jitter: colour carries the diagnosis"),
    ),
    Recipe(
        name="brain-mri-2024", source="brain tumour MRI classification with a Streamlit detection system, 2024 (Brain Tumor MRI Dataset, 4 classes)",
        arch="resnet50", preprocessing="brain_mri", epochs=25, batch_size=32, lr=1e-4,
        dropout=0.4, rotation=10, shift=0.05, hflip=True, patience=8,
        notes=("crop-to-brain + bilateral filter + resize (the paper's colour map is skipped: "
               "it adds no information to a grey image)",
               "input size: the architecture's (the paper used 200)"),
    ),
    Recipe(
        name="spine-2026", source="Ahmad et al., Biomimetics 2026, 11(3):206 (spine X-ray)",
        arch="vgg16", epochs=30, batch_size=32, lr=1e-4, dropout=0.5, rotation=10, shift=0.05,
        folds=5, patience=8,
        notes=("regimes scratch / feature / finetune via --regime; stratified 5-fold CV: one fold "
               "per run (--fold)", "optimizer, lr, epochs, dropout, augmentation: our choice"),
    ),
    Recipe(
        name="breakhis-2024", source="Liu et al., IEEE Access 2024/25 (DALAResNet50 + DT Grad-CAM, BreakHis)",
        arch="dalaresnet50", normalisation="symmetric", epochs=50, batch_size=32, lr=1e-4,
        dropout=0.25, rotation=20, hflip=True, vflip=True, ratios=(6.0, 1.0, 3.0), patience=10,
        notes=("rotation 20 deg and both flips: our choice (the paper says rotation + flip)",),
    ),
]}


def get_recipe(name: str) -> Recipe:
    """The preset ``name``; a clear error lists the known ones."""
    try:
        return RECIPES[name]
    except KeyError:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}") from None
