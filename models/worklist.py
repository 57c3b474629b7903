"""A worklist: many files read in parallel, each routed to its model and predicted.

Each file takes the Predict page's road (``imaging.load_image`` -> ``models.route`` ->
``models.predict``), in upload order; the decoding runs ahead in a thread pool (decoders run
in parallel, see ``imaging.quiet``) while the models predict one image at a time. A row and
the CSV carry the file's base name and what the models said, nothing from the file's header.
An upload over :data:`INTERACTIVE_LIMIT` files takes the batch road instead
(:func:`read_as_batch`): predicted in batches, ranked, the top ones explained, and handed back
as ``results.csv`` and ``summary.html``, all in memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imaging import ImageInputError, LoadedImage, load_image
from imaging.archive import NamedFile, content_digest
from models.batch.pipeline import BatchOptions, ModelSet, spreadsheet_safe
from models.batch.run import MemoryRun, run_in_memory
from models.predict import Prediction, predict
from models.registry import LoadedModel, ModelUnavailable
from models.route import Routing, route

__all__ = ["COLUMNS", "INTERACTIVE_LIMIT", "WorkItem", "batch_classes", "read_as_batch",
           "read_worklist", "to_csv"]

INTERACTIVE_LIMIT = 60
"""Most files the worklist reads into its table one by one; more take the batch road."""

COLUMNS = ("file", "modality", "task", "detected by", "label", "confidence", "warnings", "problem")
"""The columns of a worklist row and of its CSV, in order."""


@dataclass(frozen=True, eq=False)
class WorkItem:
    """One file of a worklist: what was read, where it was routed, the task of the model that
    read it, what the model said, or why nothing could be said (``problem``)."""

    name: str
    digest: str
    image: LoadedImage | None = None
    routing: Routing | None = None
    prediction: Prediction | None = None
    problem: str | None = None
    task: str | None = None

    @property
    def warnings(self) -> list[str]:
        """Routing and trust warnings, routing first."""
        return [*(self.routing.warnings if self.routing else []),
                *(self.prediction.warnings if self.prediction else [])]

    def row(self) -> dict[str, object]:
        """The row of the worklist table and CSV (see :data:`COLUMNS`)."""
        routing, prediction = self.routing, self.prediction
        return {
            "file": self.name,
            "modality": routing.modality if routing and routing.modality else "",
            "task": self.task or (routing.task if routing and routing.task else ""),
            "detected by": routing.source if routing and routing.modality else "",
            "label": prediction.label if prediction else "",
            "confidence": round(prediction.confidence, 4) if prediction else None,
            "warnings": " ".join(self.warnings),
            "problem": self.problem or "",
        }


def _decode(file: NamedFile) -> LoadedImage | ImageInputError:
    try:
        return load_image(file.data, name=file.name)
    except ImageInputError as exc:
        return exc


def read_worklist(
    files: Sequence[NamedFile],
    router: LoadedModel | None,
    model_for: Callable[[str, str | None], LoadedModel],
    *,
    modality: str | None = None,
    threads: int = 2,
) -> Iterator[WorkItem]:
    """One :class:`WorkItem` per file, in order, as each is done (for a progress bar).

    ``model_for(modality, task)`` gives the model of the routed modality and task (``None``:
    the modality's default; it may raise :class:`ModelUnavailable`);
    ``modality`` insists on one modality for every file, as the Predict page's box does.
    """
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for file, decoded in zip(files, pool.map(_decode, files), strict=True):
            yield _analyse(file, decoded, router, model_for, modality)


def _analyse(file: NamedFile, decoded: LoadedImage | ImageInputError,
             router: LoadedModel | None, model_for: Callable[[str, str | None], LoadedModel],
             modality: str | None) -> WorkItem:
    digest = content_digest(file.data)
    if isinstance(decoded, ImageInputError):
        return WorkItem(file.name, digest, problem=str(decoded))
    routing = route(decoded, router, modality)
    if routing.modality is None:
        return WorkItem(file.name, digest, decoded, routing,
                        problem="modality unknown: choose one to read this file")
    try:
        loaded = model_for(routing.modality, routing.task)
    except ModelUnavailable as exc:
        return WorkItem(file.name, digest, decoded, routing, problem=str(exc))
    return WorkItem(file.name, digest, decoded, routing, predict(loaded, decoded.rgb),
                    task=loaded.card.task)


def to_csv(items: Iterable[WorkItem]) -> str:
    """The worklist as CSV text: :data:`COLUMNS`, one row per file, base names only, text
    :func:`~models.batch.pipeline.spreadsheet_safe`."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow({key: spreadsheet_safe(value) if isinstance(value, str) else value
                         for key, value in item.row().items()})
    return out.getvalue()


def _batch_options(weights_dir: Path, modality: str | None) -> BatchOptions:
    return BatchOptions(modality=modality, weights_dir=weights_dir, workers=1)


def batch_classes(weights_dir: Path, modality: str | None = None) -> list[str]:
    """The classes a batch of ``modality`` (``None``: any) can be ranked by."""
    return ModelSet(_batch_options(weights_dir, modality)).classes


def read_as_batch(files: Sequence[NamedFile], weights_dir: Path, *, modality: str | None = None,
                  rank_by: str | None = None, explain_top: int = 0,
                  on_images: Callable[[int], None] | None = None) -> MemoryRun:
    """A large upload on the batch road (:func:`models.batch.run_in_memory`): every file (each
    frame of a multi-frame file) predicted, ranked by ``rank_by``, the maps of the top
    ``explain_top``; ``on_images`` hears how many images each batch finished."""
    return run_in_memory([(file.name, file.data) for file in files],
                         _batch_options(weights_dir, modality), rank_by=rank_by,
                         explain_top=explain_top if rank_by else 0, on_images=on_images)
