"""Calibration on validation data: the decision views, temperature scaling (Guo et al. 2017)
and, for two-class models, the decision threshold.

The decision views are test-time augmentation (Krizhevsky et al. 2012; Simonyan & Zisserman
2015, "multi-crop"): the logits of the image, of a few centre crops and of the flips the model
was trained with are averaged (:func:`models.predict.decision_logits`). Which views, if any,
are chosen per model on validation data (:func:`choose_views`): a crop changes a histology
tile's magnification (flips keep it: a tissue section has no up or left), and a crop that
trims a chest film's borders and labels can cost the normals on a film framed otherwise, so
every candidate is also scored on the validation images under the acquisition shifts of
:mod:`training.shift`.
Probabilities at inference are ``softmax(logits / T)`` (:func:`models.predict.probabilities`);
T changes confidences, never the class. The threshold is the cut on the calibrated probability
of the second class that maximises balanced accuracy (Youden's J) on validation data, among cuts
from 0.1 to 0.9; of cuts that do equally well the one nearest 0.5, so a validation split with few
errors keeps 0.5.

``python -m training.calibrate --model weights/NAME`` re-chooses the views, T and threshold of a
registered model on its own validation split (rebuilt from the card), re-scores its test split
(and its external sources) and refits its trust signals, without retraining. With
``--views-from RUN ...`` the views are those chosen on the validation folds pooled over
``--val-folds`` runs of the model's recipe (:func:`training.crossval.decision_views`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch, scikit-learn and the models load on use: `--help` answers at once
    import torch

__all__ = ["CANDIDATE_CROPS", "MAX_SHIFTED_RECALL_LOSS", "MAX_THRESHOLD_DISTANCE",
           "MIN_SHIFTED_IMAGES_LOST", "MIN_VIEW_GAIN", "SUSPICIOUS_TEMPERATURE", "adopt",
           "calibration_record", "choose_views", "fit_temperature", "fit_threshold", "main",
           "served_scores", "trained_flips"]


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The T > 0 that minimises the negative log-likelihood of ``labels`` (LBFGS on log T)."""
    import torch
    from torch.nn import functional as F

    logits, labels = logits.detach().float(), labels.detach().long()
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def fit_threshold(probs: np.ndarray, labels: np.ndarray,
                  max_distance: float | None = None) -> float:
    """The cut on ``probs[:, 1]`` (two classes) with the best balanced accuracy on ``labels``;
    candidates are 0.5 and the midpoints between consecutive distinct probabilities within
    ``max_distance`` of 0.5 (default :data:`MAX_THRESHOLD_DISTANCE`; 0.5: any cut)."""
    from sklearn.metrics import balanced_accuracy_score

    positive, labels = np.asarray(probs, dtype=float)[:, 1], np.asarray(labels)
    distance = MAX_THRESHOLD_DISTANCE if max_distance is None else max_distance
    values = np.unique(positive)
    cuts = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2])
    cuts = cuts[np.abs(cuts - 0.5) <= distance]
    scores = np.array([balanced_accuracy_score(labels, positive >= cut) for cut in cuts])
    best = cuts[scores >= scores.max() - 1e-12]
    return float(best[np.argmin(np.abs(best - 0.5))])


# A fitted temperature below this sharpens an already confident model: a sign of a validation
# split too easy to calibrate on (near-duplicates of training images, or too few errors).
SUSPICIOUS_TEMPERATURE = 0.5
# A decision threshold further than this from 0.5 rests on the few validation images beyond it,
# and contradicts the calibrated probability it cuts: an X-ray run's cut at p(pneumonia) >= 0.057
# called 15 of 130 test normals pneumonia. Such cuts are not adopted.
MAX_THRESHOLD_DISTANCE = 0.4


def calibration_record(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float | str]:
    """Fit T on these (validation) logits; ECE and NLL before and after, and a ``note`` when the
    fit is degenerate (no validation errors: T stays 1, since the NLL then falls without bound
    as T -> 0) or suspicious (T < 0.5, or a best validation cut below 0.1 or above 0.9, which is
    not adopted). Two classes: ``decision_threshold`` and the validation balanced accuracy at
    0.5 and at the threshold."""
    from sklearn.metrics import balanced_accuracy_score
    from torch.nn import functional as F

    from models.predict import probabilities
    from training.metrics import expected_calibration_error

    errors = int((logits.argmax(1) != labels).sum())
    temperature = fit_temperature(logits, labels) if errors else 1.0
    record: dict[str, float | str] = {"temperature": temperature, "validation_errors": errors}
    if not errors:
        record["note"] = "validation has no errors: temperature not fitted, kept at 1"
    elif temperature < SUSPICIOUS_TEMPERATURE:
        record["note"] = (f"warning: fitted temperature {temperature:.2f} < "
                          f"{SUSPICIOUS_TEMPERATURE}: the validation split may be too easy")
    for tag, t in (("before", 1.0), ("after", temperature)):
        probs = probabilities(logits, t)
        record[f"ece_{tag}"] = expected_calibration_error(probs.numpy(), labels.numpy())
        record[f"nll_{tag}"] = float(F.nll_loss(probs.clamp_min(1e-12).log(), labels))
    if probs.shape[1] == 2:
        cut = fit_threshold(probs.numpy(), labels.numpy())
        record["decision_threshold"] = cut
        for tag, value in (("half", 0.5), ("threshold", cut)):
            record[f"val_balanced_accuracy_{tag}"] = float(balanced_accuracy_score(
                labels.numpy(), probs[:, 1].numpy() >= value))
        unbounded = fit_threshold(probs.numpy(), labels.numpy(), max_distance=0.5)
        if abs(unbounded - 0.5) > MAX_THRESHOLD_DISTANCE:
            warning = (f"warning: the best validation cut {unbounded:.3f} lies beyond "
                       f"{0.5 - MAX_THRESHOLD_DISTANCE:g}-{0.5 + MAX_THRESHOLD_DISTANCE:g} and was "
                       f"not adopted (it fits a few borderline validation images); cut {cut:.3f}")
            record["note"] = f"{record['note']}; {warning}" if "note" in record else warning
    return record


# The decision views a model may average: the image with none, either or both of these centre
# crops (share of the side kept).
CANDIDATE_CROPS = (0.9, 0.8)
# Extra views cost latency and a choice among four on a few hundred validation images is itself
# noisy: views are adopted only when they lower the calibrated validation log-loss by 5 %.
MIN_VIEW_GAIN = 0.05


# A crop trims what lies at the image's edge, and on an image framed or acquired otherwise that
# can cost one class dearly: an X-ray model's 80 % crop kept 0.923 of the validation normals on
# wider images, the image alone 0.985. Views that lower a class's recall under any shift of
# :mod:`training.shift` by more than this, against the image alone, are not adopted.
MAX_SHIFTED_RECALL_LOSS = 0.03
# ... and by at least this many images: with 20 validation images of a class one image is 0.05 of
# its recall, and over seven shifts and every class some single image flips either way by
# chance (the histology flips gained four images across those cells and lost one).
MIN_SHIFTED_IMAGES_LOST = 2


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    from torch.nn import functional as F

    return float(F.cross_entropy(logits.float() / temperature, labels))


def _recalls(logits: torch.Tensor, labels: torch.Tensor, temperature: float, cut: float | None,
             classes: Sequence[str]) -> dict[str, float]:
    """Recall of each class present in ``labels``, deciding as the app does."""
    from models.predict import decide, probabilities

    decided = decide(probabilities(logits, temperature), cut)
    return {classes[k]: float((decided[labels == k] == k).float().mean())
            for k in labels.unique().tolist()}


def choose_views(views: torch.Tensor, labels: torch.Tensor,
                 shifted: Mapping[str, torch.Tensor] | None = None,
                 classes: Sequence[str] | None = None, flips: Sequence[str] = (),
                 crops: Sequence[float] = CANDIDATE_CROPS
                 ) -> tuple[list[float], list[str], dict[str, Any]]:
    """The decision crops and flips, from validation logits ``(N, 1 + len(crops) + len(flips),
    C)`` of each image, its candidate ``crops`` and its ``flips`` (the flips the model was
    trained with; :func:`models.predict.view_logits`): of the image alone and every subset of the
    crops, each with and without all the flips, the one with the lowest log-loss after fitting
    T, where it beats the image alone by :data:`MIN_VIEW_GAIN`; and the record of every
    candidate's log-loss. ``shifted``: the same logits of the validation images under each
    named shift; a candidate that lowers any class's recall there (at its own T and two-class
    cut) by more than :data:`MAX_SHIFTED_RECALL_LOSS` and :data:`MIN_SHIFTED_IMAGES_LOST` images
    against the image alone is not adopted."""
    from models.predict import probabilities

    names = list(classes) if classes else [str(k) for k in range(views.shape[-1])]
    crop_sets: list[tuple[float, ...]] = [()]
    for keep in crops:
        crop_sets += [(*c, keep) for c in crop_sets]
    flip_sets = [(), tuple(flips)] if flips else [()]
    candidates = sorted(((c, f) for f in flip_sets for c in crop_sets),
                        key=lambda views: len(views[0]) + len(views[1]))
    scored = []
    for crop_set, flip_set in candidates:
        columns = [0, *(1 + list(crops).index(keep) for keep in crop_set),
                   *(1 + len(crops) + list(flips).index(f) for f in flip_set)]
        logits = views[:, columns].mean(1)
        temperature = fit_temperature(logits, labels)
        entry: dict[str, Any] = {"crops": list(crop_set), "flips": list(flip_set),
                                 "nll": _nll(logits, labels, temperature),
                                 "temperature": temperature}
        if shifted:
            cut = (fit_threshold(probabilities(logits, temperature).numpy(), labels.numpy())
                   if logits.shape[1] == 2 else None)
            entry["shifted_recall"] = {name: _recalls(s[:, columns].mean(1), labels, temperature,
                                                      cut, names)
                                       for name, s in shifted.items()}
        scored.append(entry)
    alone = scored[0]
    if shifted:
        support = {name: int((labels == k).sum()) for k, name in enumerate(names)}
        for entry in scored:
            cells = [(alone["shifted_recall"][shift][name] - recall, shift, name)
                     for shift, recalls in entry["shifted_recall"].items()
                     for name, recall in recalls.items()]
            loss, shift, name = max(cells)
            entry["largest_shifted_loss"] = {"loss": loss, "images": round(loss * support[name]),
                                             "shift": shift, "class": name}
            entry["vetoed"] = any(lost > MAX_SHIFTED_RECALL_LOSS
                                  and round(lost * support[k]) >= MIN_SHIFTED_IMAGES_LOST
                                  for lost, _, k in cells)
    best = adopt(scored)
    rule = (f"lowest calibrated validation log-loss of the image alone and its centre crops "
            f"{list(crops)}" + (f", each with and without the flips {list(flips)}" if flips else "")
            + f", averaged, adopted when {MIN_VIEW_GAIN:.0%} below the image alone")
    if shifted:
        rule += (f" and when under none of the shifts ({', '.join(shifted)}) it lowers a class's "
                 f"recall by more than {MAX_SHIFTED_RECALL_LOSS:g} and {MIN_SHIFTED_IMAGES_LOST} "
                 f"or more images against the image alone")
    chosen = {"crops": best["crops"], "flips": best["flips"]}
    return best["crops"], best["flips"], {"chosen": chosen, "candidates": scored, "rule": rule}


def adopt(scored: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Of decision-view candidates (each with ``crops``, ``flips``, calibrated ``nll`` and, where
    the shift guard vetoes it, ``vetoed``; fewest views first), the one with the lowest log-loss
    that is not vetoed, where it beats the image alone by :data:`MIN_VIEW_GAIN`; else the image
    alone."""
    alone = next(c for c in scored if not c["crops"] and not c["flips"])
    best = min((c for c in scored if not c.get("vetoed")), key=lambda c: c["nll"])
    return best if best["nll"] <= (1 - MIN_VIEW_GAIN) * alone["nll"] else alone


def trained_flips(recipe: Mapping[str, Any]) -> list[str]:
    """The flips of :data:`models.card.FLIPS` a model trained with ``recipe`` has seen."""
    h, v = bool(recipe.get("hflip")), bool(recipe.get("vflip"))
    return [name for name, seen in (("hflip", h), ("vflip", v), ("rot180", h and v)) if seen]


def served_scores(view_logits_of: Callable[[np.ndarray, Sequence[float], Sequence[str], str | None],
                                           torch.Tensor],
                  labels: np.ndarray, val: np.ndarray, final: np.ndarray, classes: list[str],
                  *, crops_allowed: bool = True, flips: Sequence[str] = (),
                  decided: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose the decision views among the centre crops (unless not ``crops_allowed``) and
    ``flips`` (the model's :func:`trained_flips`) and calibrate on the ``val`` indices, then
    score the ``final`` (test) indices as the app decides. ``view_logits_of(index, crops, flips,
    shift)``: the ``(n, 1 + len(crops) + len(flips), C)`` logits of those images (under the
    named shift of :data:`training.shift.SHIFTS`, or as they are for ``None``), their centre
    crops and their flips. ``decided``: views chosen elsewhere (a record like
    :func:`choose_views`' with its ``chosen`` crops and flips, e.g. on pooled validation folds:
    :func:`training.crossval.decision_views`), only calibrated here. Returns the card's fields
    (``test_time_crops``, ``test_time_flips``, ``temperature``, ``decision_threshold``) and its
    metrics (the final report, ``calibration`` and ``val``)."""
    import torch

    from models.predict import decision_logits, probabilities
    from training.metrics import classification_report
    from training.shift import SHIFTS

    if decided is not None:
        candidates, flips = tuple(decided["chosen"]["crops"]), decided["chosen"]["flips"]
    else:
        candidates = CANDIDATE_CROPS if crops_allowed else ()
    val_views = view_logits_of(val, candidates, flips, None)
    val_labels = torch.as_tensor(labels[val]).long()
    if decided is not None:
        crops, chosen_flips, choice = list(candidates), list(flips), dict(decided)
    elif candidates or flips:
        shifted = {name: view_logits_of(val, candidates, flips, name) for name in SHIFTS}
        crops, chosen_flips, choice = choose_views(val_views, val_labels, shifted, classes,
                                                   flips, candidates)
    else:
        crops, chosen_flips = [], []
        choice = {"chosen": {"crops": [], "flips": []},
                  "rule": "switched off (--no-test-time-crops, no flips in training)"}
    columns = [0, *(1 + candidates.index(keep) for keep in crops),
               *(1 + len(candidates) + list(flips).index(f) for f in chosen_flips)]
    extra = len(columns) - 1
    val_logits = decision_logits(val_views[:, columns], extra)[:, 0]
    calibration = {**calibration_record(val_logits, val_labels), "test_time_views": choice}
    temperature, cut = float(calibration["temperature"]), calibration.get("decision_threshold")
    final_logits = decision_logits(view_logits_of(final, crops, chosen_flips, None), extra)[:, 0]
    report = classification_report(labels[final], probabilities(final_logits, temperature).numpy(),
                                   classes, threshold=cut)
    val_report = classification_report(labels[val], probabilities(val_logits, temperature).numpy(),
                                       classes, threshold=cut)
    fields = {"test_time_crops": crops, "test_time_flips": chosen_flips, "temperature": temperature,
              "decision_threshold": cut}
    metrics = {**report, "calibration": calibration,
               "val": {k: val_report[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1",
                                                  "auc_macro", "ece", "per_class",
                                                  "confusion_matrix")}}
    return fields, metrics


def main(argv: list[str] | None = None) -> int:
    """CLI: recalibrate one registered model on its validation split; exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.calibrate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder (weights/NAME)")
    parser.add_argument("--data", type=Path, nargs="+",
                        help="the training sources, in order (default: those on the card)")
    parser.add_argument("--external", type=Path, nargs="+",
                        help="re-score the card's external figures on these sources (default: "
                             "the sources they were scored on, when the card has them)")
    parser.add_argument("--no-test-time-crops", action="store_true",
                        help="no centre crops are tried (flips the model was trained with are)")
    parser.add_argument("--views-from", type=Path, nargs="+", metavar="RUN",
                        help="choose the decision views on the validation folds pooled over these "
                             "--val-folds runs of the model's recipe (python -m training.crossval),"
                             " not on the model's own validation split; T and threshold are still "
                             "fitted on it")
    args = parser.parse_args(argv)
    import torch

    from models.card import code_version
    from models.predict import view_logits
    from models.registry import ModelUnavailable, load_model
    from training.augment import normalise
    from training.crossval import decision_views
    from training.evaluate import record_external
    from training.shift import apply_shift
    from training.trust import fit_trust, rebuild_split

    started = time.monotonic()

    def step(message: str) -> None:
        """A progress line on stderr: the whole run takes minutes to an hour on a CPU."""
        print(f"[{time.monotonic() - started:6.0f} s] {message}", file=sys.stderr, flush=True)

    try:
        loaded = load_model(args.model, device="cpu")
        card = loaded.card
        decided = (decision_views(asdict(card), [(str(run), json.loads((run / "card.json")
                                                                         .read_text()))
                                                   for run in args.views_from])
                   if args.views_from else None)
        dataset, images, split = rebuild_split(card, args.data)
    except (ModelUnavailable, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    step(f"{card.name}: split rebuilt, {len(images)} images decoded")

    @torch.inference_mode()
    def view_logits_of(index: np.ndarray, crops: Sequence[float], flips: Sequence[str],
                       shift: str | None) -> torch.Tensor:
        step(f"{len(index)} images x {1 + len(crops) + len(flips)} views"
             + (f", under {shift}" if shift else ""))
        chunks = (images[index[i:i + 32]] for i in range(0, len(index), 32))
        return torch.cat([view_logits(loaded.model, normalise(apply_shift(shift, x) if shift else x,
                                                              card.mean, card.std), crops, flips)
                          for x in chunks])

    final = split.test if len(split.test) else split.val
    fields, metrics = served_scores(view_logits_of, dataset.labels, split.val, final, card.classes,
                                    crops_allowed=not args.no_test_time_crops,
                                    flips=trained_flips(card.recipe), decided=decided)
    recalibrated = {"command": "python -m training.calibrate " + " ".join(argv or sys.argv[1:]),
                    "code_version": code_version(),
                    "created": datetime.now(UTC).isoformat(timespec="seconds")}
    replace(card, **fields, metrics={**card.metrics, **metrics,
                                     "recalibrated": recalibrated}).write(args.model)
    step("trust signals")
    card = fit_trust(args.model, images, dataset.labels, split)
    external = args.external or ([Path(d) for d in card.metrics["external"]["data"].split(" ")]
                                 if "external" in card.metrics else [])
    if external:
        step("external sources")
        card = record_external(args.model, external)
    choice = card.metrics["calibration"]["test_time_views"]
    pooled = f"pooled over {choice['pooled']['n']} images, " if "pooled" in choice else ""
    print(f"{card.name}: crops {card.test_time_crops}, flips {card.test_time_flips} (validation "
          f"log-loss {pooled}" + (", ".join(f"{c['crops'] + c['flips']}: {c['nll']:.4f}" + (
                " (largest recall loss under a shift {loss:.3f}, {images} images: {class} under "
                "{shift}){veto}".format(**c["largest_shifted_loss"],
                                        veto=", vetoed" if c.get("vetoed") else "")
                if "largest_shifted_loss" in c else "")
                for c in choice["candidates"])
             if "candidates" in choice else choice["rule"])
          + f"), T {card.temperature:.3f}"
          + (f", threshold {card.decision_threshold:.3f}" if card.decision_threshold else "")
          + f"; {card.metrics['evaluated_on']} accuracy {card.metrics['accuracy']:.4f} "
          f"(n={card.metrics['n']}), ECE {card.metrics['ece']:.4f}"
          + (f"; external accuracy {card.metrics['external']['accuracy']:.4f} "
             f"(n={card.metrics['external']['n']})" if external else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
