"""Fit a registered model's trust signals (:mod:`models.trust`) and measure them.

``python -m training.trust --model weights/NAME [--data DIR ...]`` rebuilds the model's split
from its card (sources, seed, ratios, grouping; the test split's sha256 is checked), fits the
out-of-distribution guard on the training features with its threshold at the 97th percentile of
the validation scores (a router's: per predicted class where validation has enough of it), sets the uncertainty threshold at the 95th percentile of the validation
entropies, writes ``trust.safetensors`` and the card's ``trust`` record, and reports on the test
split how many images each signal flags and the accuracy of flagged vs unflagged images.
Every training run calls :func:`fit_trust` at export, so the statistics follow each retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.card import ModelCard

if TYPE_CHECKING:  # torch and the models load on use: `--help` answers at once
    import torch

    from models.registry import LoadedModel
    from training.data import Dataset, Split

__all__ = ["ENTROPY_QUANTILE", "OOD_MIN_PER_CLASS", "OOD_QUANTILE", "fit_trust", "flagged_by_guard", "main", "model_signals",
           "rebuild_split", "trust_report"]

# Shares of validation images under each threshold. 0.97: about 3 % of in-distribution images
# are flagged (the target is <= 5 % on test). 0.95: the 5 % least certain validation images set
# the entropy threshold (0.90 flagged 7.6 % of the MRI test split with accuracy 0.89 vs 1.00:
# too many alarms for too little difference).
OOD_QUANTILE = 0.97
# A router's thresholds are per predicted class where validation holds at least this many images
# of it (a 97th percentile of fewer is little more than their maximum): its classes are kinds of
# image of very different spread, and one threshold flagged 19.8 % of its capsule test frames
# but 0.4 % of its X-rays. A diagnosis model's classes share one modality, and per-class
# quantiles of its few dozen validation images per class only add noise (X-ray: 3.5 % -> 7.7 %
# of test images flagged), so it keeps one threshold.
OOD_MIN_PER_CLASS = 30
ENTROPY_QUANTILE = 0.95


def model_signals(loaded: LoadedModel, images: torch.Tensor, *, views: bool = False,
                  batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features ``(N, D)`` and calibrated probabilities ``(N, C)`` of ``(N, 3, S, S)``
    uint8 model views, decided as the app decides (the card's decision crops and flips averaged); with
    ``views`` the decision and each probing test-time view, ``(N, V, C)``."""
    import torch

    from models.predict import decision_logits, feature_layer, probabilities, view_logits
    from models.trust import capture_features
    from training.augment import normalise

    card = loaded.card
    features, probs = [], []
    with torch.inference_mode(), capture_features(loaded.model, feature_layer(loaded)) as captured:
        for i in range(0, len(images), batch_size):
            x = normalise(images[i:i + batch_size], card.mean, card.std).to(loaded.device)
            captured.clear()
            logits = decision_logits(view_logits(loaded.model, x, card.test_time_crops,
                                                 card.test_time_flips, altered=views),
                                     card.decision_views)
            p = probabilities(logits.flatten(0, 1), card.temperature).view(logits.shape).cpu()
            features.append(captured[0][::logits.shape[1]].float().cpu())
            probs.append(p if views else p[:, 0])
    return torch.cat(features), torch.cat(probs)


def flagged_by_guard(loaded: LoadedModel, features: torch.Tensor, probs: torch.Tensor
                     ) -> np.ndarray:
    """Which images (features and calibrated probabilities from :func:`model_signals`) the
    model's guard flags as unlike its training data, each held to its predicted class's
    threshold."""
    from models.predict import decide

    assert loaded.guard is not None, f"{loaded.card.name} has no fitted guard"
    predicted = decide(probs, loaded.card.decision_threshold)
    return (~loaded.guard.in_distribution(features, predicted)).numpy()


def _accuracy(correct: np.ndarray) -> float | None:
    return float(correct.mean()) if len(correct) else None


def trust_report(loaded: LoadedModel, images: torch.Tensor, labels: np.ndarray) -> dict[str, Any]:
    """On labelled images: share flagged by each signal and accuracy of flagged vs unflagged."""
    from models.predict import decide
    from models.trust import normalised_entropy

    features, view_probs = model_signals(loaded, images, views=True)
    probs = view_probs[:, 0]
    cut = loaded.card.decision_threshold
    view_labels = decide(view_probs.flatten(0, 1), cut).view(view_probs.shape[:2])
    correct = view_labels[:, 0].numpy() == labels
    threshold = loaded.card.trust.get("uncertainty", {}).get("entropy_threshold", 0.5)
    entropy = normalised_entropy(probs).numpy()
    disagree = (view_labels != view_labels[:, :1]).any(1).numpy()
    uncertain = (entropy > threshold) | disagree
    report: dict[str, Any] = {
        "n": len(labels),
        "uncertain_fraction": float(uncertain.mean()),
        "accuracy_uncertain": _accuracy(correct[uncertain]),
        "accuracy_certain": _accuracy(correct[~uncertain]),
        "entropy_flagged_fraction": float((entropy > threshold).mean()),
        "tta_disagreement_fraction": float(disagree.mean()),
    }
    if loaded.guard is not None:
        outside = flagged_by_guard(loaded, features, probs)
        report.update(ood_flagged_fraction=float(outside.mean()),
                      accuracy_ood_flagged=_accuracy(correct[outside]),
                      accuracy_in_distribution=_accuracy(correct[~outside]))
    return report


def fit_trust(folder: Path, images: torch.Tensor, labels: np.ndarray, split: Split) -> ModelCard:
    """Fit and store the trust signals of the model in ``folder`` from its own split."""
    from safetensors.torch import save

    from models.predict import decide, feature_layer
    from models.registry import load_model, sha256_bytes
    from models.trust import TRUST_FILE, FeatureGuard, normalised_entropy, reference_sample

    loaded = load_model(folder, device="cpu")
    train = split.train[reference_sample(len(split.train)).numpy()]  # the guard keeps no more
    train_features, _ = model_signals(loaded, images[train])
    val_features, val_probs = model_signals(loaded, images[split.val])
    classes, per_class = loaded.card.classes, loaded.card.kind == "router"
    guard = FeatureGuard.fit(
        train_features, val_features, quantile=OOD_QUANTILE, num_classes=len(classes),
        val_classes=decide(val_probs, loaded.card.decision_threshold) if per_class else None,
        min_per_class=OOD_MIN_PER_CLASS)
    entropy_threshold = float(np.quantile(normalised_entropy(val_probs).numpy(), ENTROPY_QUANTILE))
    data = save({"reference": guard.reference.half().contiguous()})
    (folder / TRUST_FILE).write_bytes(data)
    rule = f"{OOD_QUANTILE:.0%} quantile of validation scores"
    ood: dict[str, Any] = {
        "method": "k-NN distance of L2-normalised penultimate features (Sun et al., ICML 2022)",
        "k": guard.k, "threshold": guard.threshold, "reference_images": len(guard.reference),
        "layer": feature_layer(loaded), "threshold_rule": rule}
    if guard.class_thresholds is not None:
        ood["class_thresholds"] = dict(zip(classes, guard.class_thresholds, strict=True))
        ood["threshold_rule"] = (f"{rule} of the images predicted as each class (classes with "
                                 f"fewer than {OOD_MIN_PER_CLASS} such images: of all)")
    trust = {
        "file": TRUST_FILE, "sha256": sha256_bytes(data), "ood": ood,
        "uncertainty": {"entropy_threshold": entropy_threshold,
                        "threshold_rule": f"{ENTROPY_QUANTILE:.0%} quantile of validation "
                                          "normalised entropies; also uncertain when a "
                                          "test-time view (centre crops, +-0.1 brightness) "
                                          "changes the label"},
    }
    card = replace(loaded.card, trust=trust)
    card.write(folder)
    measured = trust_report(load_model(folder, device="cpu"), images[split.test if len(split.test)
                                                                     else split.val],
                            labels[split.test if len(split.test) else split.val])
    card = replace(card, trust={**trust, "test": measured})
    card.write(folder)
    return card


def rebuild_split(card: ModelCard, sources: list[Path] | None = None
                  ) -> tuple[Dataset, torch.Tensor, Split]:
    """The card's dataset, decoded model views and split, exactly as training made them."""
    import torch

    from imaging.preprocess import kept_region
    from training.data import GroupRule, decode_images, dhash, list_sources, make_split, thumbnails

    sources = sources or [Path(s["source"]) for s in card.data.get("sources", [])] \
        or [Path(card.data["source"])]
    rule_record = card.split.get("group_rule", {})
    dataset = list_sources(sources, group_column=rule_record.get("group_column"),
                           max_per_class=card.data.get("max_per_class"))
    if dataset.classes != card.classes:
        raise ValueError(f"the data's classes {dataset.classes} are not the card's {card.classes}")
    images = decode_images(dataset.paths, card.preprocessing, card.input_size,
                           threads=torch.get_num_threads())
    rule = GroupRule(**rule_record)
    hashes = dhash(images, rule.hash_bits) if rule.max_hamming >= 0 else None
    thumbs = (thumbnails(images, kept_region(card.preprocessing, card.input_size))
              if rule.min_correlation is not None else None)
    split = make_split(dataset, hashes, rule, seed=card.split["seed"],
                       ratios=card.split.get("ratios") or (8, 1, 1),
                       folds=card.split.get("folds") or 0, fold=card.split.get("fold") or 0,
                       val_folds=card.split.get("val_folds") or 0,
                       val_fold=card.split.get("val_fold") or 0, thumbs=thumbs)
    if split.record["test_sha256"] != card.split.get("test_sha256"):
        raise ValueError("the rebuilt test split differs from the card's: pass the same --data "
                         "sources, in the same order, as the training run")
    return dataset, images, split


def main(argv: list[str] | None = None) -> int:
    """CLI: refit the trust signals of one registered model; exit 2 with one line on bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.trust", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder (weights/NAME)")
    parser.add_argument("--data", type=Path, nargs="+",
                        help="the training sources, in order (default: those on the card)")
    parser.add_argument("--json", action="store_true", help="print the test report as JSON")
    args = parser.parse_args(argv)
    from models.registry import ModelUnavailable

    try:
        card = ModelCard.read(args.model)
        dataset, images, split = rebuild_split(card, args.data)
        card = fit_trust(args.model, images, dataset.labels, split)
    except (ModelUnavailable, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = card.trust["test"]
    print(json.dumps(report) if args.json else
          f"{card.name}: ood threshold {card.trust['ood']['threshold']:.3f}, entropy threshold "
          f"{card.trust['uncertainty']['entropy_threshold']:.3f}; on the test split: "
          + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in report.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
