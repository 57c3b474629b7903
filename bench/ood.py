"""Out-of-distribution guards: AUROC per family of foreign images, per shipped model.

    python bench/ood.py [--models router-lite0,xray-lite1] [--weights-dir DIR] [--json]
                        [--out bench/results/ood.json]

For every model in the registry (diagnosis models and the modality router) the in-distribution
images are its own test split (rebuilt from the card); the foreign images are the families of
:mod:`training.ood_sets` (photos, documents, other medical images, DICOM of modalities without a
model, generated images), plus, for each endoscopy model, the frames of the other endoscopy
task: Kvasir-SEG colonoscopy frames for the capsule model, capsule frames for the colonoscopy one.
Each is scored by the shipped guard (k-NN feature distance) and, for comparison, by a
Mahalanobis score (Lee et al., NeurIPS 2018: class means, shared Ledoit-Wolf covariance) fitted on
up to 2,048 training images. Reported: AUROC (foreign vs test images), the share of foreign images
the shipped thresholds flag, and the share of test images they flag (in all and per predicted
class: the guard holds each image to its predicted class's threshold). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import environment, write_results  # noqa: E402
from imaging import load_path, preprocess  # noqa: E402
from models.card import ModelCard  # noqa: E402
from models.predict import decide  # noqa: E402
from models.registry import LoadedModel, list_cards, load_model  # noqa: E402
from models.trust import reference_sample  # noqa: E402
from training.ood_sets import FAMILIES, ood_family  # noqa: E402
from training.trust import flagged_by_guard, model_signals, rebuild_split  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ood.json"
TARGET_AUROC = 0.95
TARGET_ID_FLAGGED = 0.05
OTHER_TASK_FRAMES = 200
MAHALANOBIS_SAMPLE = 2048  # training images the comparison scorer is fitted on


def _data_root() -> Path | None:
    import os

    root = Path(os.environ.get("MEDXAI_DATA", ROOT.parent / "shared" / "data"))
    return root if root.is_dir() else None


def _mahalanobis(train: torch.Tensor, labels: np.ndarray):
    """A scorer: minimum class-conditional Mahalanobis distance with a shared covariance."""
    from sklearn.covariance import LedoitWolf

    x = train.numpy().astype(np.float64)
    means = np.stack([x[labels == c].mean(0) for c in np.unique(labels)])
    precision = LedoitWolf().fit(x - means[np.searchsorted(np.unique(labels), labels)]).precision_

    def score(features: torch.Tensor) -> np.ndarray:
        f = features.numpy().astype(np.float64)
        diffs = f[:, None, :] - means[None]
        return np.einsum("ncd,de,nce->nc", diffs, precision, diffs).min(1)

    return score


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(outside))],
                               np.r_[inside, outside]))


def _views(loaded: LoadedModel, images: list[np.ndarray]) -> torch.Tensor:
    card = loaded.card
    views = [preprocess(rgb, card.preprocessing, card.input_size) for rgb in images]
    return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous()


def bench_model(folder: Path, data_root: Path | None) -> dict[str, object]:
    """AUROC and flag rates per family for the model in ``folder``."""
    loaded = load_model(folder, device="cpu")
    card = loaded.card
    dataset, images, split = rebuild_split(card, [ROOT / s["source"] for s in card.data["sources"]])
    train = split.train[reference_sample(len(split.train), MAHALANOBIS_SAMPLE).numpy()]
    train_features, _ = model_signals(loaded, images[train])
    test_features, test_probs = model_signals(loaded, images[split.test])
    mahalanobis = _mahalanobis(train_features, dataset.labels[train])
    guard = loaded.guard
    assert guard is not None, f"{card.name} has no fitted guard; run python -m training.trust"
    inside_knn = guard.score(test_features).numpy()
    inside_maha = mahalanobis(test_features)
    families = {name: ood_family(name, data_root) for name in FAMILIES}
    other_task = {"capsule-bleeding": ("colonoscopy", "kvasir-seg/images"),
                  "colonoscopy-polyp": ("capsule", "wce-bleeding/*")}.get(card.task)
    if other_task and data_root is not None:
        family, pattern = other_task
        frames = sorted(data_root.glob(f"{pattern}/*.jpg"))[:OTHER_TASK_FRAMES]
        families[family] = [(p.name, load_path(p).rgb) for p in frames]
    rows = {}
    for family, members in families.items():
        if not members:
            continue
        features, probs = model_signals(loaded, _views(loaded, [rgb for _, rgb in members]))
        flagged = flagged_by_guard(loaded, features, probs)
        rows[family] = {"n": len(members),
                        "auroc_knn": _auroc(inside_knn, guard.score(features).numpy()),
                        "auroc_mahalanobis": _auroc(inside_maha, mahalanobis(features)),
                        "flagged": float(flagged.mean()),
                        "missed": [name for (name, _), f in zip(members, flagged, strict=True)
                                   if not f]}
    test_flagged = flagged_by_guard(loaded, test_features, test_probs)
    predicted = decide(test_probs, card.decision_threshold).numpy()
    return {"model": card.name, "kind": card.kind, "modality": card.modality,
            "test_n": int(len(split.test)), "test_flagged": float(test_flagged.mean()),
            "test_flagged_by_class": {c: float(test_flagged[predicted == i].mean())
                                      for i, c in enumerate(card.classes) if (predicted == i).any()},
            "threshold": guard.threshold, "class_thresholds": card.trust["ood"].get("class_thresholds"),
            "families": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="comma-separated model folder names (default: all)")
    parser.add_argument("--weights-dir", type=Path, default=ROOT / "weights")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    wanted = set(args.models.split(",")) if args.models else None
    data_root = _data_root()
    results, start = [], time.perf_counter()
    for folder, card in list_cards(args.weights_dir):
        if isinstance(card, ModelCard) and card.default and (wanted is None or folder.name in wanted):
            print(f"... {folder.name}", flush=True)
            results.append(bench_model(folder, data_root))
    lines = [f"{'model':<18} {'family':<14} {'n':>4} {'AUROC kNN':>9} {'AUROC Maha':>10} "
             f"{'flagged':>8}  (target AUROC >= {TARGET_AUROC})"]
    for result in results:
        lines.append(f"{result['model']:<18} {'test (in)':<14} {result['test_n']:>4} {'':>9} "
                     f"{'':>10} {result['test_flagged']:>8.1%}")
        for name, share in result["test_flagged_by_class"].items():
            lines.append(f"{'':<18} {'  as ' + name[:9]:<14} {'':>4} {'':>9} {'':>10} {share:>8.1%}")
        for family, row in result["families"].items():
            lines.append(f"{'':<18} {family:<14} {row['n']:>4} {row['auroc_knn']:>9.3f} "
                         f"{row['auroc_mahalanobis']:>10.3f} {row['flagged']:>8.1%}")
    summary = {"environment": environment(), "seconds": time.perf_counter() - start,
               "target_auroc": TARGET_AUROC, "target_test_flagged": TARGET_ID_FLAGGED,
               "models": results}
    write_results(summary, args.out, "\n".join(lines), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
