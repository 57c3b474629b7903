"""The model card: the single source of truth for a registered model.

Training writes it, inference reads it (classes, preprocessing, normalisation, temperature),
the UI renders it. Stored as ``card.json`` beside the weights in ``weights/<name>/``.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imaging import MODALITIES, PREPROCESSING

__all__ = ["CARD_FILE", "DEFAULT_TASKS", "FLIPS", "KINDS", "PROBE_MARGIN", "PROBE_SATURATED", "ROUTER_MODALITY",
           "ROUTER_TASK", "TASKS", "CardError", "Headline", "ModelCard", "Task", "beats_probe",
           "code_version", "headline", "routed_to", "wilson_interval"]

CARD_FILE = "card.json"
# ``diagnosis``: classifies images of one modality; ``router``: tells the modality of an image.
KINDS = ("diagnosis", "router")
ROUTER_MODALITY = "any"  # the modality field of a router's card
ROUTER_TASK = "routing"  # the task field of a router's card
# Flips a model may decide on (test-time augmentation), by name: the dimensions of an
# ``(N, 3, H, W)`` input each one reverses (rot180 reverses both, a half turn).
FLIPS: dict[str, tuple[int, ...]] = {"hflip": (3,), "vflip": (2,), "rot180": (2, 3)}


@dataclass(frozen=True)
class Task:
    """What a diagnosis model is for: the modality of its images and a title for people."""

    modality: str
    title: str


# Every task a diagnosis model can have; the registry keeps one default model per task.
TASKS: dict[str, Task] = {
    "capsule-bleeding": Task("endoscopy", "capsule endoscopy for bleeding"),
    "colonoscopy-polyp": Task("endoscopy", "colonoscopy for polyps"),
    "brain-tumour": Task("mri", "brain MRI for tumours"),
    "chest-pneumonia": Task("xray", "chest X-ray for pneumonia"),
    "lung-cancer": Task("histology", "lung histology for cancer"),
}
# A modality's first task: the task of a card written before cards had one (each modality then
# had this one model) and the model a modality gets when nothing names its task.
DEFAULT_TASKS: dict[str, str] = {"endoscopy": "capsule-bleeding", "mri": "brain-tumour",
                                 "xray": "chest-pneumonia", "histology": "lung-cancer"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CardError(ValueError):
    """A model card that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to load, run, trust and reproduce one trained model.

    ``data``: dataset name, source, licence and image counts; ``split``: method, seed, ratios
    and sizes; ``recipe``: hyper-parameters and the exact command; ``metrics``: test-split
    figures (and calibration); ``temperature``: softmax temperature fitted on validation;
    ``kind``: ``diagnosis`` or ``router`` (its classes are modalities or tasks, see
    :func:`routed_to`; its modality ``any``); ``task``: one of :data:`TASKS` for the card's
    modality (empty: the modality's :data:`DEFAULT_TASKS` entry; a router's is ``routing``);
    ``trust``: the out-of-distribution guard and uncertainty thresholds (see
    :mod:`models.trust`), with the file and sha256 of their statistics;
    ``decision_threshold`` (two-class models): the second class is predicted when its
    calibrated probability reaches it (fitted on validation; ``None``: the larger probability);
    ``test_time_crops``: the prediction averages the logits of the image and of these centre
    crops (share of the side kept, resized back; chosen on validation, see
    :func:`models.predict.decision_logits`; empty: the image alone); ``test_time_flips``: and
    of these flips of the image (names of :data:`models.trust.FLIPS`, chosen likewise among the
    flips the model was trained with).
    """

    name: str
    modality: str
    arch: str
    classes: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    preprocessing: str
    weights_file: str
    sha256: str
    code_version: str
    created: str
    data: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0
    default: bool = True
    kind: str = "diagnosis"
    trust: dict[str, Any] = field(default_factory=dict)
    decision_threshold: float | None = None
    task: str = ""
    test_time_crops: list[float] = field(default_factory=list)
    test_time_flips: list[str] = field(default_factory=list)

    @property
    def decision_views(self) -> int:
        """How many views besides the image itself the decision averages."""
        return len(self.test_time_crops) + len(self.test_time_flips)

    def __post_init__(self) -> None:
        if not self.task:  # a card from before tasks: the task its modality then had
            default = ROUTER_TASK if self.kind == "router" else DEFAULT_TASKS.get(self.modality, "")
            object.__setattr__(self, "task", default)
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        elif self.kind == "router" and self.modality != ROUTER_MODALITY:
            problems.append(f"a router's modality must be {ROUTER_MODALITY!r}")
        elif self.kind == "router" and self.task != ROUTER_TASK:
            problems.append(f"a router's task must be {ROUTER_TASK!r}")
        elif self.kind == "router" and not all(c in MODALITIES or c in TASKS for c in self.classes):
            problems.append("a router's classes must be modalities or tasks")
        elif self.kind == "diagnosis" and self.modality not in MODALITIES:
            problems.append(f"modality {self.modality!r} is not one of {', '.join(MODALITIES)}")
        elif self.kind == "diagnosis" and (self.task not in TASKS
                                           or TASKS[self.task].modality != self.modality):
            known = [t for t, task in TASKS.items() if task.modality == self.modality]
            problems.append(f"task {self.task!r} is not a task of {self.modality} "
                            f"({', '.join(known)})")
        trust_file = self.trust.get("file")
        if trust_file is not None and (Path(trust_file).name != trust_file
                                       or not _SHA256.fullmatch(str(self.trust.get("sha256")))):
            problems.append("trust.file must be a bare file name with its sha256")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append("classes must be at least two distinct names")
        if self.preprocessing not in PREPROCESSING:
            problems.append(f"preprocessing {self.preprocessing!r} is not one of {PREPROCESSING}")
        if not _SHA256.fullmatch(self.sha256):
            problems.append("sha256 must be 64 lower-case hex digits")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std need three values each, std > 0")
        if self.decision_threshold is not None and (
                len(self.classes) != 2 or not 0 < self.decision_threshold < 1):
            problems.append("decision_threshold needs two classes and a value in (0, 1)")
        if not all(isinstance(c, int | float) and 0.5 <= c < 1 for c in self.test_time_crops):
            problems.append("test_time_crops must be shares of the side in [0.5, 1)")
        if not set(self.test_time_flips) <= set(FLIPS) or len(set(self.test_time_flips)) != len(
                self.test_time_flips):
            problems.append(f"test_time_flips must be distinct names among {', '.join(FLIPS)}")
        if self.input_size < 32 or self.temperature <= 0:
            problems.append("input_size must be >= 32 and temperature > 0")
        if Path(self.weights_file).name != self.weights_file:
            problems.append("weights_file must be a bare file name inside the model folder")
        if problems:
            raise CardError(f"model card {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelCard:
        """Build a card from parsed JSON; unknown keys are ignored, missing ones are an error."""
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError as exc:
            raise CardError(f"model card is incomplete: {exc}") from None

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """Read ``card.json`` (or the card inside a model folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CardError(f"no model card at {path}") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise CardError(f"model card {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise CardError(f"model card {path} is not a JSON object")
        return cls.from_dict(raw)

    def write(self, folder: str | Path) -> Path:
        """Write the card as ``folder/card.json`` (pretty, stable key order)."""
        path = Path(folder) / CARD_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path


def routed_to(label: str) -> tuple[str, str | None]:
    """The modality and task a router's class stands for: a task names both, a modality leaves
    the task to the registry (its :data:`DEFAULT_TASKS` entry)."""
    if label in TASKS:
        return TASKS[label].modality, label
    if label in MODALITIES:
        return label, None
    raise CardError(f"router class {label!r} is neither a modality nor a task")


def code_version(repo: Path | None = None) -> str:
    """The git commit of this checkout (``+dirty`` with uncommitted changes outside ``weights/``:
    the registry's cards and weights are what the tools write, not code), else ``unknown``."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)weights"], cwd=repo, capture_output=True,
                               text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty.strip() else "")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (95% for ``z = 1.96``)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError("need n > 0 and 0 <= successes <= n")
    p, q = successes / n, z * z / n
    centre, half = (p + q / 2) / (1 + q), z / (1 + q) * math.sqrt(p * (1 - p) / n + q / (4 * n))
    # the exact bounds at 0/n and n/n are 0 and 1; clipping guards the rest against rounding
    return (0.0 if successes == 0 else max(0.0, centre - half),
            1.0 if successes == n else min(1.0, centre + half))


PROBE_MARGIN = 0.03  # balanced-accuracy points a shipped model must gain over its linear probe
PROBE_SATURATED = 0.97  # probe balanced accuracy from which "no worse" suffices


def beats_probe(model: float, probe: float) -> bool:
    """The shipping rule: ``model >= probe + PROBE_MARGIN`` in balanced accuracy, or
    ``model >= probe`` once the probe is saturated."""
    return model >= probe + PROBE_MARGIN - 1e-9 or (probe >= PROBE_SATURATED and model >= probe)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Headline:
    """What a clinician should read first: test accuracy with n and its 95% Wilson interval,
    accuracy on external data and the linear-probe baseline (``None`` where the card has none)."""

    accuracy: float | None
    n: int | None
    ci: tuple[float, float] | None
    external_accuracy: float | None
    external_n: int | None
    probe_accuracy: float | None
    beats_probe: bool | None = None  # the shipping rule on balanced accuracy, where both are known

    @property
    def ci_text(self) -> str:
        """``92.3-96.9%``, or ``n/a``."""
        return f"{self.ci[0] * 100:.1f}-{self.ci[1] * 100:.1f}%" if self.ci else "n/a"

    @property
    def external_text(self) -> str:
        """``91.0% (n=200)``, or ``n/a``."""
        if self.external_accuracy is None:
            return "n/a"
        return f"{self.external_accuracy:.1%}" + (f" (n={self.external_n})" if self.external_n else "")

    @property
    def sentence(self) -> str:
        """One plain sentence of the figures the card has."""
        if self.accuracy is None:
            return "no test accuracy recorded"
        detail = [f"95% CI {self.ci_text}"] if self.ci else []
        detail += [f"n={self.n}"] if self.n else []
        parts = [f"test accuracy {self.accuracy:.1%}" + (f" ({', '.join(detail)})" if detail else "")]
        if self.external_accuracy is not None:
            parts.append(f"external {self.external_text}")
        if self.probe_accuracy is not None:
            parts.append(f"linear-probe baseline {self.probe_accuracy:.1%}"
                         + (f" ({self.probe_rule_text})" if self.beats_probe is False else ""))
        return "; ".join(parts)

    @property
    def probe_rule_text(self) -> str:
        """Whether the model clears the shipping rule against its linear probe."""
        if self.beats_probe is None:
            return "n/a"
        return ("rule met" if self.beats_probe else
                f"rule not met: the model should beat the probe by {PROBE_MARGIN * 100:.0f} points "
                "of balanced accuracy")


def headline(card: ModelCard | Mapping[str, Any]) -> Headline:
    """The headline figures of a card (or of its raw JSON dict) from its ``metrics``:
    top level (test split), ``external`` and ``probe`` (each with ``accuracy`` and ``n``), and
    :func:`beats_probe` on the two balanced accuracies."""
    metrics = card.metrics if isinstance(card, ModelCard) else card.get("metrics") or {}
    external = metrics.get("external") if isinstance(metrics.get("external"), Mapping) else {}
    probe = metrics.get("probe") if isinstance(metrics.get("probe"), Mapping) else {}
    accuracy, n = _number(metrics.get("accuracy")), _number(metrics.get("n"))
    count = int(n) if n and n > 0 else None
    ci = wilson_interval(round(accuracy * count), count) if accuracy is not None and count else None
    external_n = _number(external.get("n"))
    balanced, probe_balanced = _number(metrics.get("balanced_accuracy")), _number(probe.get("balanced_accuracy"))
    rule = None if balanced is None or probe_balanced is None else beats_probe(balanced, probe_balanced)
    return Headline(accuracy, count, ci, _number(external.get("accuracy")),
                    int(external_n) if external_n else None, _number(probe.get("accuracy")), rule)
