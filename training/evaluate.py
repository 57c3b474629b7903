"""Evaluate a registered model on a labelled data set.

``python -m training.evaluate --data DIR (--model NAME | --modality M) [--split test] [--json]
[--plots DIR] [--weights-dir W] [--near-copies]``

``--model`` is a folder name in the registry (or a model folder path); ``--modality`` takes the
registry's default model. Images go through exactly the inference path (card preprocessing,
input size, normalisation, temperature). The data's class names must all be on the card (matched
by name, case-insensitively). ``--split test`` evaluates only the files the card records as its
test split (their sha256 is checked), which reproduces the card's metrics. ``--plots`` writes
the confusion matrix, ROC curves and reliability diagram as interactive HTML (plotly) and PNG
(matplotlib: plotly's own PNG export, kaleido, needs a separate Chrome install).
``--near-copies`` also counts the images that nearly copy one the model was trained or validated
on (an "independent" copy of a public dataset can hold them) and scores the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imaging import MODALITIES
from models.card import wilson_interval

if TYPE_CHECKING:  # the heavy modules load inside the functions, so --help stays fast
    import torch

    from models.card import ModelCard
    from models.registry import LoadedModel
    from training.data import Dataset

__all__ = ["evaluate", "main", "match_classes", "model_probabilities", "record_external",
           "write_plots"]


def match_classes(dataset: Dataset, card_classes: list[str]) -> Dataset:
    """``dataset`` relabelled to the card's class indices; unknown data classes are an error."""
    from training.data import Dataset

    lookup = {c.lower(): i for i, c in enumerate(card_classes)}
    missing = [c for c in dataset.classes if c.lower() not in lookup]
    if missing:
        raise ValueError(f"data classes {missing} are not classes of the model "
                         f"({', '.join(card_classes)}); rename the folders to match the card")
    remap = np.array([lookup[c.lower()] for c in dataset.classes])
    return Dataset(dataset.root, dataset.files, remap[dataset.labels], list(card_classes),
                   dataset.groups)


def select_test_split(dataset: Dataset, split: dict[str, Any]) -> Dataset:
    """The files of the card's recorded test split (checked against its sha256)."""
    from training.data import Dataset, sha256_of_files

    files = split.get("test_files")
    if not files or sha256_of_files(files) != split.get("test_sha256"):
        raise ValueError("the model card records no usable test split (test_files / test_sha256)")
    position = {f: i for i, f in enumerate(dataset.files)}
    absent = [f for f in files if f not in position]
    if absent:
        raise ValueError(f"{len(absent)} test files of the card are not in the data "
                         f"(first: {absent[0]}); pass the data folder the model was trained on")
    index = np.array([position[f] for f in files])
    return Dataset(dataset.root, list(files), dataset.labels[index], dataset.classes, None)


def model_probabilities(loaded: LoadedModel, images: torch.Tensor) -> np.ndarray:
    """Calibrated class probabilities of ``(N, 3, S, S)`` uint8 model views, decided as the app
    decides (:func:`training.trust.model_signals`)."""
    from training.trust import model_signals

    return model_signals(loaded, images)[1].numpy()


def evaluate(loaded: LoadedModel, data: Path | Sequence[Path], *, split: str = "all",
             near_copies: bool = False) -> dict[str, Any]:
    """Metrics of ``loaded`` on ``data`` (one source or several, listed as training lists them;
    ``split``: ``all`` or the card's ``test``), with ``model``, ``data``, ``split``, the 95 %
    Wilson interval of the accuracy and the trust signals' report
    (:func:`training.trust.trust_report`) added; with ``near_copies``, which images nearly copy
    one the model was trained on (:func:`training.twins.training_copies`)."""
    import torch

    from training.data import decode_images, list_sources
    from training.metrics import classification_report
    from training.trust import trust_report

    sources = [Path(data)] if isinstance(data, str | Path) else [Path(d) for d in data]
    dataset = match_classes(list_sources(sources), loaded.card.classes)
    if split == "test":
        dataset = select_test_split(dataset, loaded.card.split)
    images = decode_images(dataset.paths, loaded.card.preprocessing, loaded.card.input_size,
                           threads=torch.get_num_threads())
    probs = model_probabilities(loaded, images)
    report = classification_report(dataset.labels, probs, loaded.card.classes,
                                   threshold=loaded.card.decision_threshold)
    correct = int(round(report["accuracy"] * report["n"]))
    report.update(model=loaded.card.name, data=" ".join(map(str, sources)), split=split,
                  accuracy_ci95=list(wilson_interval(correct, report["n"])),
                  trust=trust_report(loaded, images, dataset.labels))
    if near_copies:
        from models.predict import decide
        from training.twins import training_copies

        correct = decide(probs, loaded.card.decision_threshold) == np.asarray(dataset.labels)
        report["near_copies"] = training_copies(loaded.card, images, correct,
                                                torch.get_num_threads())
    return report


def record_external(folder: Path, sources: Sequence[Path]) -> ModelCard:
    """Evaluate the model in ``folder`` on images of other sources; store ``metrics["external"]``."""
    from dataclasses import replace

    from models.card import ModelCard
    from models.registry import load_model

    report = evaluate(load_model(folder, device="cpu"), sources)
    keys = ("n", "accuracy", "accuracy_ci95", "balanced_accuracy", "macro_f1", "auc_macro", "ece",
            "confusion_matrix", "data")
    card = ModelCard.read(folder)
    card = replace(card, metrics={**card.metrics, "external": {k: report[k] for k in keys}})
    card.write(folder)
    return card


def write_plots(report: dict[str, Any], folder: Path, bins: int = 15) -> list[Path]:
    """Confusion matrix, one-vs-rest ROC curves and reliability diagram as HTML and PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    folder.mkdir(parents=True, exist_ok=True)
    classes = report["classes"]
    cm = np.array(report["confusion_matrix"])
    roc = {c: (curve["fpr"], curve["tpr"]) for c, curve in report["roc"].items()}
    centres, accuracy = report["reliability"]["centre"], report["reliability"]["accuracy"]
    counts = report["reliability"]["count"]

    figures = {
        "confusion_matrix": go.Figure(go.Heatmap(z=cm, x=classes, y=classes, text=cm,
                                                 texttemplate="%{text}", colorscale="Blues")),
        "roc": go.Figure([go.Scatter(x=fpr, y=tpr, name=f"{c} (AUC {report['per_class'][c]['auc']:.3f})")
                          for c, (fpr, tpr) in roc.items()]
                         + [go.Scatter(x=[0, 1], y=[0, 1], name="chance", line={"dash": "dot"})]),
        "reliability": go.Figure([go.Bar(x=centres, y=accuracy, width=1 / bins, name="accuracy",
                                         text=[f"n={c}" for c in counts], textposition="outside"),
                                  go.Scatter(x=[0, 1], y=[0, 1], name="perfect calibration")]),
    }
    titles = {"confusion_matrix": ("predicted", "true", "Confusion matrix"),
              "roc": ("false positive rate", "true positive rate", "ROC (one vs rest)"),
              "reliability": ("confidence", "accuracy", f"Reliability (ECE {report['ece']:.3f})")}
    written = []
    for name, fig in figures.items():
        xlabel, ylabel, title = titles[name]
        fig.update_layout(title=f"{title}: {report['model']}", xaxis_title=xlabel, yaxis_title=ylabel)
        if name == "confusion_matrix":
            fig.update_yaxes(autorange="reversed")
        html = folder / f"{name}.html"
        fig.write_html(html, include_plotlyjs="directory")
        written.append(html)

        figure, axis = plt.subplots(figsize=(5.5, 4.5), dpi=120)
        if name == "confusion_matrix":
            axis.imshow(cm, cmap="Blues")
            axis.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
            axis.set_yticks(range(len(classes)), classes)
            for (i, j), value in np.ndenumerate(cm):
                axis.text(j, i, str(value), ha="center", va="center",
                          color="white" if value > cm.max() / 2 else "black")
        elif name == "roc":
            for c, (fpr, tpr) in roc.items():
                axis.plot(fpr, tpr, label=f"{c} (AUC {report['per_class'][c]['auc']:.3f})")
            axis.plot([0, 1], [0, 1], ":", color="grey")
            axis.legend(fontsize=8)
        else:
            bars = axis.bar(centres, accuracy, width=1 / bins, edgecolor="black", alpha=0.7)
            axis.bar_label(bars, labels=[f"n={c}" for c in counts], fontsize=6)
            axis.plot([0, 1], [0, 1], ":", color="grey")
            axis.set_xlim(0, 1)
            axis.set_ylim(0, 1)
        axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
        figure.tight_layout()
        png = folder / f"{name}.png"
        figure.savefig(png)
        plt.close(figure)
        written.append(png)
    return written


def _print_table(report: dict[str, Any]) -> None:
    low, high = report["accuracy_ci95"]
    print(f"{report['model']} on {report['data']} ({report['split']}, n={report['n']}); "
          f"accuracy 95% CI {low:.3f}-{high:.3f}")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "gmean", "iba",
                "auc_macro", "ece"):
        value = report[key]
        print(f"  {key:<18} {'n/a' if value is None else f'{value:.4f}'}")
    print(f"  {'class':<20} {'prec/PPV':>8} {'sens':>8} {'spec':>8} {'NPV':>8} {'F1':>8} {'AUC':>8} {'n':>6}")
    for name, row in report["per_class"].items():
        auc = "n/a" if row["auc"] is None else f"{row['auc']:.4f}"
        print(f"  {name:<20} {row['precision']:8.4f} {row['sensitivity']:8.4f} "
              f"{row['specificity']:8.4f} {row['npv']:8.4f} {row['f1']:8.4f} {auc:>8} {row['support']:6d}")
    print("  confusion matrix (rows true, columns predicted):")
    for name, row in zip(report["classes"], report["confusion_matrix"], strict=True):
        print(f"    {name:<20} {row}")
    trust = report["trust"]
    print(f"  uncertain: {trust['uncertain_fraction']:.1%} of images, accuracy "
          f"{_share(trust['accuracy_uncertain'])} vs {_share(trust['accuracy_certain'])} certain")
    if "ood_flagged_fraction" in trust:
        print(f"  out of distribution: {trust['ood_flagged_fraction']:.1%} of images flagged")
    copies = report.get("near_copies")
    if copies:
        rest = copies["without_copies"]
        print(f"  near copies of training images (thumbnail correlation > "
              f"{copies['copy_correlation']}): {copies['copies']} of {copies['n']}; accuracy "
              f"without them {_share(rest['accuracy'])} (n={rest['n']})")


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; 0 on success, 2 on bad input or no model."""
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="class folders or CSVs (several: as given to training)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registry folder name, or a model folder path")
    which.add_argument("--modality", choices=MODALITIES, help="the modality's default model")
    parser.add_argument("--split", choices=("all", "test"), default="all",
                        help="all images, or the card's recorded test split")
    parser.add_argument("--weights-dir", type=Path, help="registry folder (default weights/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plots", type=Path, help="folder for HTML and PNG plots")
    parser.add_argument("--device", help="cpu, cuda, mps (default: auto)")
    parser.add_argument("--near-copies", action="store_true",
                        help="also count the images that nearly copy one the model was trained "
                             "or validated on (needs its training data where its card says)")
    args = parser.parse_args(argv)
    from imaging import ImageInputError
    from models.registry import ModelUnavailable, load_for_modality, load_named

    try:
        if args.model:
            loaded = load_named(args.model, args.weights_dir, args.device)
        else:
            loaded = load_for_modality(args.modality, args.weights_dir, args.device)
        report = evaluate(loaded, args.data, split=args.split, near_copies=args.near_copies)
    except (ModelUnavailable, ImageInputError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.plots:
        report["plots"] = [str(p) for p in write_plots(report, args.plots)]
    if args.json:
        print(json.dumps(report))
        return 0
    _print_table(report)
    if args.plots:
        print(f"plots written to {args.plots}/: " + ", ".join(Path(p).name for p in report["plots"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
