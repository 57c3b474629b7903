"""The model card: the single source of truth for a registered model.

Training writes it, inference reads it (classes, preprocessing, normalisation, temperature),
the UI renders it. Stored as ``card.json`` beside the weights in ``weights/<name>/``.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imaging import MODALITIES, PREPROCESSING

__all__ = ["CARD_FILE", "CardError", "ModelCard", "code_version"]

CARD_FILE = "card.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CardError(ValueError):
    """A model card that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to load, run, trust and reproduce one trained model.

    ``data``: dataset name, source, licence and image counts; ``split``: method, seed, ratios
    and sizes; ``recipe``: hyper-parameters and the exact command; ``metrics``: test-split
    figures (and calibration); ``temperature``: softmax temperature fitted on validation.
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

    def __post_init__(self) -> None:
        problems = []
        if self.modality not in MODALITIES:
            problems.append(f"modality {self.modality!r} is not one of {', '.join(MODALITIES)}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append("classes must be at least two distinct names")
        if self.preprocessing not in PREPROCESSING:
            problems.append(f"preprocessing {self.preprocessing!r} is not one of {PREPROCESSING}")
        if not _SHA256.fullmatch(self.sha256):
            problems.append("sha256 must be 64 lower-case hex digits")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std need three values each, std > 0")
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


def code_version() -> str:
    """The git commit of this checkout (``+dirty`` with uncommitted changes), else ``unknown``."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty.strip() else "")
