"""A model card in plain words: its data, split and recipe as sentences, its metrics named and
explained, for the Models page and anyone reading a card without knowing its JSON keys.

Every function takes a :class:`~models.card.ModelCard` (or its metrics) and tolerates missing
keys: a card written by hand or by an older version gives fewer sentences, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.card import TASKS, ModelCard, headline

__all__ = ["METRICS", "PER_CLASS", "PREPROCESSING_TEXT", "best_localizer", "checks_text",
           "data_text", "headline_text", "metric_rows", "model_text", "per_class_rows", "recipe_text",
           "split_text"]

PREPROCESSING_TEXT: dict[str, str] = {
    "resize": "the whole image is resized to a square, nothing cut away",
    "brain_mri": "the image is cropped to the head, smoothed (bilateral filter, edges kept) and "
                 "resized to a square",
    "mask_frame": "the whole image is resized to a square, then everything outside the round "
                  "field of view is blacked out: the corners, the box in the lower left and the "
                  "strip of burned-in text on the left. Every frame gets the same mask, so the "
                  "model looks at the bowel wall and cannot tell hospitals or scopes apart by "
                  "their on-screen furniture",
}
"""Each preprocessing in plain words (what the model is shown of an upload)."""

METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("Accuracy", "share of test images given the right class"),
    "balanced_accuracy": ("Balanced accuracy", "mean of the per-class sensitivities: every class "
                          "counts the same, however many images it has"),
    "macro_f1": ("F1 score, class average", "per-class F1 (balance of PPV and sensitivity), "
                 "averaged over classes"),
    "weighted_f1": ("F1 score, weighted", "per-class F1 averaged with the classes' image counts "
                    "as weights"),
    "gmean": ("G-mean", "geometric mean of the per-class sensitivities: low when any one class "
              "is often missed"),
    "iba": ("Index of balanced accuracy (IBA)", "G-mean squared per class, corrected for a "
            "skew towards sensitivity or specificity (alpha 0.1), averaged over classes"),
    "auc_macro": ("ROC AUC, class average", "chance that a random image of a class scores higher "
                  "for that class than a random image of another class (1 = perfect, 0.5 = "
                  "guessing)"),
    "ece": ("Calibration error (ECE)", "average gap between the stated confidence and the actual "
            "accuracy (0 = confidence can be taken at its word)"),
    "n": ("Test images", "number of held-out test images these figures come from"),
    "parameters": ("Parameters", "number of trained weights of the network"),
}
"""Scalar test metrics: key -> (plain name, one-line explanation)."""

PER_CLASS: dict[str, str] = {
    "sensitivity": "Sensitivity (recall)", "specificity": "Specificity",
    "ppv": "PPV (precision)", "npv": "NPV", "f1": "F1", "auc": "ROC AUC",
    "support": "Test images",
}
"""Per-class columns shown (precision and recall are the same numbers as PPV and sensitivity)."""


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _counts(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} {_count(n)}" for name, n in counts.items())


def _source(source: Mapping[str, Any]) -> str:
    """``"wce-bleeding (800)"`` from a source record; ``DIR=LABEL`` sources name their label."""
    path, _, label = str(source.get("source", "?")).partition("=")
    name = path.rstrip("/").split("/")[-1] + (f" (all {label})" if label else "")
    images = source.get("images")
    return name + (f" ({_count(images)})" if isinstance(images, int) and images > 0 else "")


def model_text(card: ModelCard) -> list[str]:
    """What the model is and is for: its task, network, input, preprocessing in plain words,
    classes, softmax temperature and the views it decides on."""
    task = TASKS.get(card.task)
    preprocessing = PREPROCESSING_TEXT.get(card.preprocessing)
    return [
        *([f"Task: **{task.title}** (`{card.task}`)"] if task and card.kind == "diagnosis" else []),
        f"{card.arch}, input {card.input_size} px, preprocessing `{card.preprocessing}`"
        + (f": {preprocessing}" if preprocessing else ""),
        f"Classes: {', '.join(card.classes)}",
        f"Softmax temperature {card.temperature:.3f} (fitted on validation images; below 1 "
        "sharpens, above 1 softens the confidence)",
        "Decides on " + (f"the image and its {_and(_decision_views(card))} (logits averaged; "
                         f"chosen because they lowered the {_views_evidence(card)})"
                         if card.decision_views else "the image alone")]


def headline_text(card: ModelCard) -> str:
    """The card's headline figures as one sentence (test accuracy with its 95 % CI and n, the
    external figure, the linear-probe baseline and whether the model clears it): what a
    clinician reads beside a prediction, and the report's line."""
    sentence = headline(card).sentence
    return sentence[0].upper() + sentence[1:] + "."


def _views_evidence(card: ModelCard) -> str:
    """Which validation images chose the decision views: the model's own, or pooled folds."""
    pooled = card.metrics.get("calibration", {}).get("test_time_views", {}).get("pooled")
    if not pooled:
        return "validation log-loss"
    return (f"log-loss pooled over {_count(pooled['n'])} validation images of "
            f"{len(pooled['runs'])} cross-validation runs of the same recipe")


FLIP_TEXT = {"hflip": "left-right mirror image", "vflip": "upside-down mirror image",
             "rot180": "half turn"}


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def _decision_views(card: ModelCard) -> list[str]:
    """The card's decision views besides the image, in words."""
    crops = ([f"{' and '.join(f'{c:.0%}' for c in card.test_time_crops)} centre crop"
              + ("s" if len(card.test_time_crops) > 1 else "")] if card.test_time_crops else [])
    return crops + [FLIP_TEXT[f] for f in card.test_time_flips]


def best_localizer(card: ModelCard) -> str | None:
    """The heat-map method that found the lesions best on this model's test masks
    (``metrics["localization"]["best"]["method"]``, written by ``bench/xai_localization.py
    --write-card``); ``None`` when the card has no such table."""
    localization = card.metrics.get("localization")
    best = localization.get("best") if isinstance(localization, Mapping) else None
    method = best.get("method") if isinstance(best, Mapping) else None
    return method if isinstance(method, str) else None


def data_text(card: ModelCard) -> list[str]:
    """The training data: name, licence, images per source and per class."""
    data = card.data
    lines = [f"**{data.get('name', 'Unnamed data set')}**"
             + (f", licence: {data['licence']}" if data.get("licence") else "")]
    sources = [s for s in data.get("sources") or [] if isinstance(s, Mapping)]
    if data.get("images"):
        where = f" from {', '.join(_source(s) for s in sources)}" if sources else ""
        lines.append(f"{_count(data['images'])} images{where}.")
    if isinstance(data.get("counts"), Mapping):
        lines.append(f"Per class: {_counts(data['counts'])}.")
    if data.get("max_per_class"):
        lines.append(f"At most {_count(data['max_per_class'])} images per class were used.")
    return lines


def split_text(card: ModelCard) -> list[str]:
    """How the images were divided into training, validation and test sets, and why test
    images are not near-copies of training images."""
    split = card.split
    if not split:
        return ["No split recorded."]
    lines = []
    method = str(split.get("method", "split"))
    ratios = split.get("ratios")
    ratio = f" {':'.join(f'{r:g}' for r in ratios)}" if isinstance(ratios, list) else ""
    if split.get("folds"):
        ratio = f", {split['folds']}-fold cross-validation, test fold {split.get('fold')}"
    detail = [*(["training : validation : test"] if ratio and not split.get("folds") else []),
              *([f"seed {split['seed']}"] if "seed" in split else [])]
    lines.append(f"{method[0].upper()}{method[1:]}{ratio}"
                 + (f" ({', '.join(detail)})" if detail else "") + ".")
    counts = split.get("counts")
    if isinstance(counts, Mapping):
        names = {"train": "training", "val": "validation", "test": "test"}
        lines.append("Images: " + "; ".join(
            f"{names.get(part, part)} {_count(sum(c.values()) if isinstance(c, Mapping) else c)}"
            for part, c in counts.items()) + ".")
    if split.get("grouping"):
        groups = (f" {_count(split['groups'])} groups" if split.get("groups") else "")
        largest = (f", the largest of {_count(split['largest_group'])} images"
                   if split.get("largest_group") else "")
        lines.append(f"Near-duplicates stay in one set ({split['grouping']}):{groups}{largest}.")
    if split.get("test_sha256"):
        lines.append(f"The test file list is recorded (sha256 {str(split['test_sha256'])[:12]}...).")
    return lines


_REGIME = {"finetune": "Every layer fine-tuned", "feature": "Backbone frozen, only the head "
           "trained", "scratch": "Trained from random weights"}
_OPTIMISER = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}
_BALANCE = {"loss": "classes weighted in the loss", "sampler": "classes balanced by the sampler",
            "none": "no class balancing"}


def _augmentation(recipe: Mapping[str, Any]) -> str:
    parts = []
    if recipe.get("rotation"):
        parts.append(f"rotation up to {recipe['rotation']:g} degrees")
    if recipe.get("shift"):
        parts.append(f"shifts up to {recipe['shift']:.0%} of the side")
    flips = [name for key, name in (("hflip", "horizontal"), ("vflip", "vertical"))
             if recipe.get(key)]
    if flips:
        parts.append(f"{' and '.join(flips)} flips")
    if recipe.get("brightness_alpha") or recipe.get("brightness_beta"):
        parts.append(f"contrast x(1 +- {recipe.get('brightness_alpha', 0):g}) and brightness "
                     f"+-{recipe.get('brightness_beta', 0):g}")
    if recipe.get("crop_scale", 1) < 1:
        parts.append(f"random crops keeping {recipe['crop_scale']:.0%} or more of the image")
    if recipe.get("gamma_jitter"):
        parts.append("gamma jitter")
    if recipe.get("blur"):
        parts.append(f"blur on {recipe['blur']:.0%} of the images")
    if recipe.get("sharpen"):
        parts.append(f"sharpness x{1 / recipe['sharpen']:.2g} to x{recipe['sharpen']:g}")
    if recipe.get("jpeg"):
        parts.append(f"JPEG re-encoding at quality {recipe['jpeg']}-95")
    if recipe.get("auto_augment") not in (None, "none"):
        parts.append(f"{recipe['auto_augment']} automatic augmentation")
    return ", ".join(parts) if parts else "none"


def recipe_text(card: ModelCard) -> list[str]:
    """How the model was trained, in sentences; the exact command is the caller's to show."""
    recipe = card.recipe
    if not recipe:
        return ["No recipe recorded."]
    lines = []
    if recipe.get("name"):
        lines.append(f"Recipe **{recipe['name']}**"
                     + (f", after {recipe['source']}" if recipe.get("source") else "") + ".")
    regime = _REGIME.get(str(recipe.get("regime")), str(recipe.get("regime", "")))
    start = " from ImageNet weights" if recipe.get("pretrained") == "imagenet" else ""
    if regime:
        lines.append(f"{regime}{start}: {card.arch} at {card.input_size} px.")
    if recipe.get("epochs"):
        warmup = (f" after {recipe['warmup_epochs']} epochs training only the head"
                  if recipe.get("warmup_epochs") else "")
        stop = (f", stopped early after {recipe['patience']} epochs without improvement"
                if recipe.get("patience") else "")
        lines.append(f"Up to {recipe['epochs']} epochs{warmup}{stop}, batch {recipe.get('batch_size')}.")
    training = card.metrics.get("training") or {}
    if training.get("best_epoch"):
        head_only = training.get("best_stage") == "head" and recipe.get("regime") == "finetune"
        lines.append(f"Kept: epoch {training['best_epoch']} of {training.get('epochs_run')}, the "
                     "lowest validation loss" + (
                         " (a head-only epoch: no fine-tuning epoch beat it, so the backbone is "
                         "the ImageNet one, unchanged)" if head_only else "") + ".")
    if recipe.get("optimizer"):
        schedule = {"cosine": "cosine decay", "step": "step decay",
                    "constant": "constant rate"}.get(str(recipe.get("schedule")), "")
        optimiser = _OPTIMISER.get(str(recipe["optimizer"]), str(recipe["optimizer"]))
        lines.append(f"Optimiser {optimiser}, learning rate {recipe.get('lr'):g}"
                     + (f" ({schedule})" if schedule else "")
                     + (f", weight decay {recipe['weight_decay']:g}" if recipe.get("weight_decay") else "")
                     + (f", label smoothing {recipe['label_smoothing']:g}"
                        if recipe.get("label_smoothing") else "") + ".")
    if recipe.get("ema"):
        lines.append(f"The weights kept are a moving average over the last ~{1 / (1 - recipe['ema']):.0f} "
                     "training steps (exponential, decay "
                     f"{recipe['ema']:g}): validation, early stopping and this model use it.")
    lines.append(f"Augmentation: {_augmentation(recipe)}.")
    regions = card.data.get("region_masks") or {}
    if recipe.get("region_weight") and regions:
        lines.append(f"Attention supervision (weight {recipe['region_weight']:g}): "
                     f"{_count(regions.get('images', 0))} images carry a lesion mask; on those "
                     "of the training split the class activation map was pulled toward the "
                     "mask, so the maps show where the model was taught to look as well as "
                     "where it looks. Localisation is scored on test images only.")
    if recipe.get("balance"):
        lines.append(f"Class balance: {_BALANCE.get(str(recipe['balance']), recipe['balance'])}.")
    lines += [f"Note: {note}." for note in recipe.get("notes") or []]
    return lines


def metric_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """The scalar test metrics as rows: plain name, value, what it means (known ones first, in
    :data:`METRICS` order; unknown numbers by their key in words)."""
    scalars = {k: v for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    keys = [k for k in METRICS if k in scalars] + [k for k in scalars if k not in METRICS]
    rows = []
    for key in keys:
        name, meaning = METRICS.get(key, (key.replace("_", " ").capitalize(), ""))
        value = scalars[key]
        shown = (_count(int(value)) if key in ("n", "parameters")
                 else f"{value:.1%}" if key not in ("ece",) and 0 <= value <= 1
                 else f"{value:.4f}")
        rows.append({"metric": name, "value": shown, "meaning": meaning})
    return rows


def per_class_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per class with the :data:`PER_CLASS` columns (percentages; ``n/a`` if absent)."""
    per_class = metrics.get("per_class")
    if not isinstance(per_class, Mapping):
        return []
    rows = []
    for name, values in per_class.items():
        row = {"class": str(name)}
        for key, column in PER_CLASS.items():
            value = values.get(key) if isinstance(values, Mapping) else None
            row[column] = ("n/a" if not isinstance(value, int | float)
                           else _count(value) if key == "support" else f"{value:.1%}")
        rows.append(row)
    return rows


def _share_text(share: object) -> str | None:
    """``"99.4% (n=178, 95% CI 96.9-99.9%)"`` from a :mod:`training.twins` share."""
    if not isinstance(share, Mapping) or not isinstance(share.get("accuracy"), float):
        return None
    ci = share.get("ci95")
    return (f"{share['accuracy']:.1%} (n={_count(share.get('n'))}"
            + (f", 95% CI {ci[0]:.1%}-{ci[1]:.1%}" if isinstance(ci, list) and len(ci) == 2 else "")
            + ")")


def _twins_text(twins: object) -> list[str]:
    """Whether the test figure rests on near-copies of training images (``metrics["twins"]``)."""
    if not isinstance(twins, Mapping) or not isinstance(twins.get("model"), Mapping):
        return []
    less, more = (_share_text(twins["model"].get(half))
                  for half in ("less_alike_half", "more_alike_half"))
    if less is None or more is None:
        return []
    neighbours = twins.get("nearest_neighbour") or {}
    pixels, features = (neighbours.get(kind, {}).get("accuracy") for kind in ("pixels", "features"))
    copies = twins.get("copies")
    line = (f"On the half of the test images least like any training image: {less}; on the "
            f"other half {more}")
    if isinstance(pixels, float) and isinstance(features, float):
        line += (f". Giving each test image the class of its most similar training image scores "
                 f"{pixels:.1%} (pixels) and {features:.1%} (ImageNet features)")
    if isinstance(copies, int):
        line += (f"; test images that nearly copy a training image (thumbnail correlation "
                 f"> {twins.get('copy_correlation', 0.95)}): {_count(copies)}")
    return [line + "."]


def checks_text(card: ModelCard) -> list[str]:
    """Figures beyond the test split: external data, the linear-probe floor, whether the test
    figure rests on near-copies of training images, cross-source runs (models trained on one
    source and scored on another)."""
    metrics = card.metrics
    lines = []
    external = metrics.get("external")
    if isinstance(external, Mapping) and isinstance(external.get("accuracy"), float):
        lines.append(f"On images from another source: {external['accuracy']:.1%} accuracy"
                     + (f" (n={_count(external['n'])})" if external.get("n") else "") + ".")
    probe = metrics.get("probe")
    if isinstance(probe, Mapping) and isinstance(probe.get("accuracy"), float):
        lines.append(f"Linear probe on frozen ImageNet features (the floor to beat): "
                     f"{probe['accuracy']:.1%} on the same test images.")
    lines += _twins_text(metrics.get("twins"))
    cross = metrics.get("cross_source")
    for run in cross.get("runs", []) if isinstance(cross, Mapping) else []:
        if isinstance(run, Mapping) and isinstance(run.get("accuracy"), float):
            lines.append(f"Same recipe trained on {run.get('trained_on')} only, scored on "
                         f"{run.get('tested_on')}: {run['accuracy']:.1%}"
                         + (f" (n={_count(run['n'])})" if run.get("n") else "")
                         + (f", against {run['own_test_accuracy']:.1%} on its own test split"
                            if isinstance(run.get("own_test_accuracy"), float) else "") + ".")
    return lines
