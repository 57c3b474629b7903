"""Which model reads this image: the DICOM tag, the modality router, or the user.

The router is a registry model of kind ``router``. Its classes are modalities, or tasks where a
modality has several (``capsule-bleeding``, ``colonoscopy-polyp``; see
:func:`models.card.routed_to`), so one pass tells both the modality and the task. Order of
authority for the modality: a modality or task the user insists on, then the DICOM Modality
tag, then the router. The task is the user's, else the router's when it agrees on the modality,
else the modality's default. The router always runs when installed, so a choice that
contradicts a confident router is flagged, and an image that its out-of-distribution guard
places far from every modality is ``unknown`` (no diagnosis model runs unless the user insists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imaging import MODALITIES, LoadedImage
from models.card import TASKS, routed_to
from models.predict import Prediction, predict, predict_batch
from models.registry import (
    LoadedModel,
    ModelUnavailable,
    find_router,
    load_for_modality,
    load_model,
)

__all__ = ["CONTRADICTION_CONFIDENCE", "Routing", "choose_modality", "describe", "load_router", "route",
           "route_and_load", "route_batch", "unrecognised"]

# A router at least this sure of another modality makes a user's or tag's choice suspect.
CONTRADICTION_CONFIDENCE = 0.9

_NAMES = {"mri": "brain MRI", "xray": "X-ray", "endoscopy": "endoscopy", "histology": "histology"}


@dataclass(frozen=True)
class Routing:
    """The modality to use (``None``: unknown), where it came from (``user``, ``dicom``,
    ``router`` or ``none``), the router's own reading of the image (``None`` without one) and
    the task (``None``: the modality's default model)."""

    modality: str | None
    source: str
    router: Prediction | None = None
    task: str | None = None

    @property
    def confidence(self) -> float | None:
        """The router's probability of the chosen modality (summed over its tasks)."""
        if self.router is None or self.modality is None:
            return None
        return sum(p for label, p in self.router.probabilities.items()
                   if routed_to(label)[0] == self.modality)

    @property
    def recognised(self) -> bool:
        """The router knows this image as one of its modalities."""
        return self.router is not None and self.router.in_distribution is not False

    @property
    def warnings(self) -> list[str]:
        """Sentences to show before any label; empty when routing is unremarkable."""
        found = []
        router = self.router
        origin = "the DICOM header says" if self.source == "dicom" else "you chose"
        if router is not None and router.in_distribution is False:
            found.append("This image does not look like any modality the app has models for "
                         "(endoscopy, brain MRI, X-ray, histology)"
                         + (": no model was run." if self.modality is None else
                            f"; {origin} {describe(self.modality)}, so the label below is not "
                            "reliable."))
        elif (router is not None and self.modality is not None and self.source != "router"
              and routed_to(router.label)[0] != self.modality
              and router.confidence >= CONTRADICTION_CONFIDENCE):
            found.append(f"This image looks like {describe(router.label)} "
                         f"({router.confidence:.0%}), but {origin} {describe(self.modality)}: "
                         "the label below is not reliable.")
        return found


def describe(label: str) -> str:
    """A modality's or task's name for people (``mri`` -> ``brain MRI``, ``colonoscopy-polyp``
    -> ``colonoscopy for polyps``)."""
    return TASKS[label].title if label in TASKS else _NAMES.get(label, label)


def route(image: LoadedImage | np.ndarray, router: LoadedModel | None,
          requested: str | None = None, task: str | None = None) -> Routing:
    """Choose the modality and task of ``image`` (a :class:`LoadedImage` or an RGB array);
    ``requested`` / ``task``: the user's modality / task (a task implies its modality)."""
    requested = _requested_modality(requested, task)
    rgb = image.rgb if isinstance(image, LoadedImage) else image
    tagged = image.suggested_modality if isinstance(image, LoadedImage) else None
    reading = predict(router, rgb, views=False) if router is not None else None
    return choose_modality(reading, tagged, requested, task)


def route_batch(router: LoadedModel | None, router_views: Sequence[np.ndarray],
                tagged: Sequence[str | None], requested: str | None = None,
                task: str | None = None, pass_rows: int | None = None) -> list[Routing]:
    """:func:`route` for many images: ``router_views`` are the images in the router's view
    (ignored without a router), ``tagged`` each image's DICOM suggestion; ``pass_rows`` as in
    :func:`models.predict.predict_batch`."""
    requested = _requested_modality(requested, task)
    readings: list[Prediction | None] = [None] * len(tagged)
    if router is not None:
        readings = list(predict_batch(router, router_views, views=False, pass_rows=pass_rows))
    return [choose_modality(reading, tag, requested, task)
            for reading, tag in zip(readings, tagged, strict=True)]


def _requested_modality(requested: str | None, task: str | None) -> str | None:
    """The modality the user insists on: ``requested``, or the one ``task`` implies."""
    if task is None:
        return requested
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if requested not in (None, TASKS[task].modality):
        raise ValueError(f"task {task} reads {describe(TASKS[task].modality)}, not "
                         f"{describe(requested)}")
    return TASKS[task].modality


def choose_modality(reading: Prediction | None, tagged: str | None, requested: str | None,
                    task: str | None = None) -> Routing:
    """The user's modality, else the DICOM tag's, else the router's ``reading`` (``None`` when
    it finds the image out of distribution, or when there is no router); the task is the
    user's, else the router's when it agrees on the modality, else the modality's default."""
    # Design: the router runs on every upload anyway, so a finer class (capsule vs colonoscopy)
    # names the task in that same pass: simpler and surer than weighing several models' guards.
    read_modality, read_task = (routed_to(reading.label) if reading is not None
                                and reading.in_distribution is not False else (None, None))
    chosen = requested or tagged
    if chosen:
        return Routing(chosen, "user" if requested else "dicom", reading,
                       task or (read_task if read_modality == chosen else None))
    if reading is None:
        return Routing(None, "none")
    return Routing(read_modality, "router", reading, read_task)


def unrecognised(routing: Routing) -> str:
    """Why no modality was chosen for an image, and what to do about it."""
    reason = ("it does not look like any of them" if routing.router is not None else
              "there is no DICOM Modality tag and no modality router is installed")
    return (f"no known modality was recognised in this image ({reason}); pass "
            f"--modality ({', '.join(MODALITIES)}) to insist")


def load_router(root: Path | None = None) -> LoadedModel | None:
    """The installed modality router, or ``None`` when there is none (or it cannot load)."""
    try:
        return load_model(find_router(root))
    except ModelUnavailable:
        return None


def route_and_load(image: LoadedImage, requested: str | None = None,
                   root: Path | None = None, task: str | None = None
                   ) -> tuple[Routing, LoadedModel]:
    """Route ``image`` and load the diagnosis model of its modality and task (the CLIs' road).

    Raises ``ValueError`` when no known modality is recognised and none was requested, and
    :class:`ModelUnavailable` when no model for the routed task is installed.
    """
    routing = route(image, load_router(root), requested, task)
    if routing.modality is None:
        raise ValueError(unrecognised(routing))
    return routing, load_for_modality(routing.modality, root, task=routing.task)
