"""The weight registry: ``weights/<name>/{card.json, <weights file>}``, one folder per model.

Finding a model reads only cards; loading checks the weights' sha256 against the card before
deserialising (safetensors, or ``torch.load(weights_only=True)``) and checks that the weights
fit the architecture and class list. Every failure is a :class:`ModelUnavailable` for that
model's modality alone, so one broken model never takes the others down. The registry keeps one
default model per (modality, task) (see :data:`models.card.TASKS`); a modality without a task
named gets the model of its first task (:data:`models.card.DEFAULT_TASKS`) when there is one.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imaging import MODALITIES
from models.card import CARD_FILE, DEFAULT_TASKS, TASKS, CardError, ModelCard, code_version
from models.device import select_device
from models.trust import FeatureGuard
from models.zoo import ArchSpec, build_model, get_arch, list_archs

__all__ = [
    "WEIGHTS_DIR_ENV",
    "LoadedModel",
    "ModelUnavailable",
    "UnknownArchitecture",
    "default_weights_dir",
    "find_card",
    "find_router",
    "list_cards",
    "load_for_modality",
    "load_model",
    "load_named",
    "registry_status",
    "save_model",
    "sha256_bytes",
]

WEIGHTS_DIR_ENV = "MEDXAI_WEIGHTS_DIR"


class ModelUnavailable(RuntimeError):
    """No usable model for a modality; ``str()`` is a sentence a clinician can read."""

    def __init__(self, modality: str, reason: str) -> None:
        super().__init__(f"no usable model for {modality}: {reason}")
        self.modality = modality
        self.reason = reason


class UnknownArchitecture(CardError):
    """A well-formed card naming an architecture this code does not register."""

    def __init__(self, card: ModelCard) -> None:
        super().__init__(f"model card {card.name!r}: architecture {card.arch!r} is unknown; "
                         f"known: {', '.join(list_archs())}")
        self.card = card


@dataclass(frozen=True)
class LoadedModel:
    """A verified model in eval mode on ``device``, with its card and architecture."""

    model: nn.Module
    card: ModelCard
    arch: ArchSpec
    device: torch.device
    folder: Path
    guard: FeatureGuard | None = None


def default_weights_dir() -> Path:
    """``$MEDXAI_WEIGHTS_DIR`` if set, else the repository's ``weights/``."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "weights"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def find_card(modality: str, root: Path | None = None, task: str | None = None
              ) -> tuple[Path, ModelCard]:
    """The folder and card of the default model for ``modality`` (and ``task``, if given).

    Among valid cards for the modality (and task), those of the modality's first task come
    first when no task is given (:data:`models.card.DEFAULT_TASKS`); then one marked
    ``default`` wins, then the first by folder name. Unreadable cards are skipped here and listed by :func:`list_cards`;
    when none is left, the reason names this modality's cards with an unknown architecture.
    """
    if modality not in MODALITIES:
        raise ModelUnavailable(modality, f"unknown modality; choose one of {', '.join(MODALITIES)}")
    if task is not None and (task not in TASKS or TASKS[task].modality != modality):
        known = [t for t, spec in TASKS.items() if spec.modality == modality]
        raise ModelUnavailable(modality, f"unknown task {task!r}; choose one of {', '.join(known)}")
    root = root or default_weights_dir()
    entries = list_cards(root)
    candidates = [(card.task != DEFAULT_TASKS[modality], not card.default, folder.name, folder, card)
                  for folder, card in entries
                  if isinstance(card, ModelCard) and card.modality == modality
                  and card.kind == "diagnosis" and task in (None, card.task)]
    unknown = [str(error) for _, error in entries
               if isinstance(error, UnknownArchitecture) and error.card.modality == modality
               and task in (None, error.card.task)]
    if not candidates and unknown:
        raise ModelUnavailable(modality, "; ".join(unknown))
    if not candidates:
        wanted = f" for {TASKS[task].title} ({task})" if task else ""
        flags = f"--modality {modality}" + (f" --task {task}" if task else "")
        raise ModelUnavailable(modality, f"no model{wanted} is installed in {root}; train one "
                                         f"with `python -m training.train {flags} ...`")
    *_, folder, card = min(candidates)
    return folder, card


def list_cards(root: Path | None = None) -> list[tuple[Path, ModelCard | CardError]]:
    """Every model folder under ``root`` (sorted) with its card, or the error reading it.

    A card naming an unknown architecture is an :class:`UnknownArchitecture` error entry.
    """
    entries: list[tuple[Path, ModelCard | CardError]] = []
    for folder in sorted(p.parent for p in (root or default_weights_dir()).glob(f"*/{CARD_FILE}")):
        try:
            entries.append((folder, _read_card(folder)))
        except CardError as exc:
            entries.append((folder, exc))
    return entries


def load_model(folder: Path, device: torch.device | str | None = None) -> LoadedModel:
    """Verify and load the model in ``folder``; raises :class:`ModelUnavailable` on any problem."""
    folder = Path(folder)
    try:
        card = _read_card(folder)
    except UnknownArchitecture as exc:
        raise ModelUnavailable(exc.card.modality, str(exc)) from None
    except CardError as exc:
        raise ModelUnavailable(folder.name, str(exc)) from None
    weights_path = folder / card.weights_file
    try:
        data = weights_path.read_bytes()
    except OSError:
        raise ModelUnavailable(card.modality, f"weights file {weights_path} is missing") from None
    actual = sha256_bytes(data)
    if actual != card.sha256:
        raise ModelUnavailable(card.modality, f"sha256 of {weights_path.name} ({actual[:12]}...) "
                                              f"does not match its model card "
                                              f"({card.sha256[:12]}...): the file was changed or "
                                              "corrupted; refusing to load it")
    state = _deserialise(data, weights_path, card.modality)
    arch = get_arch(card.arch)
    model = build_model(card.arch, len(card.classes))
    _check_fits(model, state, card)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    device = torch.device(device) if device is not None else select_device()
    return LoadedModel(model.eval().to(device), card, arch, device, folder, _load_guard(folder, card))


def _load_guard(folder: Path, card: ModelCard) -> FeatureGuard | None:
    """The card's out-of-distribution guard, sha256-checked; ``None`` when the card has none."""
    ood = card.trust.get("ood")
    if not ood:
        return None
    path = folder / card.trust["file"]
    try:
        data = path.read_bytes()
    except OSError:
        raise ModelUnavailable(card.modality, f"trust statistics {path} are missing") from None
    if sha256_bytes(data) != card.trust["sha256"]:
        raise ModelUnavailable(card.modality, f"sha256 of {path.name} does not match its model "
                                              "card: the file was changed or corrupted")
    from safetensors.torch import load as load_safetensors

    per_class = ood.get("class_thresholds")
    return FeatureGuard(load_safetensors(data)["reference"], int(ood["k"]), float(ood["threshold"]),
                        None if per_class is None else [float(per_class[c]) for c in card.classes])


def find_router(root: Path | None = None) -> Path:
    """The folder of the default modality router (a card of kind ``router``)."""
    root = root or default_weights_dir()
    candidates = [(not card.default, folder.name, folder) for folder, card in list_cards(root)
                  if isinstance(card, ModelCard) and card.kind == "router"]
    if not candidates:
        raise ModelUnavailable("routing", f"no modality router is installed in {root}")
    return min(candidates)[2]


def load_for_modality(
    modality: str, root: Path | None = None, device: torch.device | str | None = None, *,
    task: str | None = None,
) -> LoadedModel:
    """Find and load the default model for ``modality`` (and ``task``; see :func:`find_card`)."""
    folder, _ = find_card(modality, root, task)
    return load_model(folder, device)


def load_named(name: str | Path, root: Path | None = None,
               device: torch.device | str | None = None) -> LoadedModel:
    """Load a model by its registry folder name under ``root``, or by a model folder path."""
    folder = Path(name)
    if not (folder / CARD_FILE).is_file():
        folder = (root or default_weights_dir()) / str(name)
    if not (folder / CARD_FILE).is_file():
        known = [f.name for f, card in list_cards(root) if isinstance(card, ModelCard)]
        raise ModelUnavailable(str(name), f"no model folder {name!r} in "
                                          f"{root or default_weights_dir()} (installed: "
                                          f"{', '.join(known) or 'none'})")
    return load_model(folder, device)


def save_model(model: nn.Module, folder: Path, *, half: bool = True, **card_fields: Any) -> ModelCard:
    """Write ``model`` as ``folder/model.safetensors`` (fp16 when ``half``) plus its card.

    ``card_fields`` are the :class:`ModelCard` fields other than the file name, sha256 (computed
    here), and ``code_version``/``created`` (filled in when absent). The card is validated
    before anything is written.
    """
    from safetensors.torch import save

    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    data = save(state)
    card_fields.setdefault("code_version", code_version())
    card_fields.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    card = ModelCard(weights_file="model.safetensors", sha256=sha256_bytes(data), **card_fields)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / card.weights_file).write_bytes(data)
    card.write(folder)
    return card


def registry_status(root: Path | None = None, *, by_task: bool = False
                    ) -> dict[Any, ModelCard | ModelUnavailable]:
    """For each modality (``by_task``: each (modality, task) of :data:`models.card.TASKS`) its
    default card, or why there is none (cards only, no weights read)."""
    keys: list[tuple[str, str | None]] = (
        [(spec.modality, task) for task, spec in TASKS.items()] if by_task
        else [(modality, None) for modality in MODALITIES])
    status: dict[Any, ModelCard | ModelUnavailable] = {}
    for modality, task in keys:
        key = (modality, task) if by_task else modality
        try:
            status[key] = find_card(modality, root, task)[1]
        except ModelUnavailable as exc:
            status[key] = exc
    return status


def _read_card(folder: Path) -> ModelCard:
    """The card in ``folder``, also checked against the registered architectures."""
    card = ModelCard.read(folder)
    if card.arch not in list_archs():
        raise UnknownArchitecture(card)
    return card


def _deserialise(data: bytes, path: Path, modality: str) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load as load_safetensors

            return load_safetensors(data)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any decoding failure means an unusable file, never a crash
        raise ModelUnavailable(modality, f"weights file {path.name} cannot be read safely "
                                         f"({type(exc).__name__}); only plain tensors are "
                                         "accepted") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelUnavailable(modality, f"weights file {path.name} is not a state dict of tensors")
    return state


def _check_fits(model: nn.Module, state: dict[str, torch.Tensor], card: ModelCard) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if not (missing or unexpected or wrong):
        return
    if wrong and all(expected[k].shape[0] == len(card.classes) for k in wrong):
        reason = (f"the card lists {len(card.classes)} classes but the weights' head has "
                  f"{state[wrong[0]].shape[0]} outputs")
    else:
        reason = (f"weights do not fit architecture {card.arch}: {len(missing)} missing, "
                  f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors "
                  f"(first: {(missing + unexpected + wrong)[0]})")
    raise ModelUnavailable(card.modality, reason)
