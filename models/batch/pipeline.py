"""Batch prediction as a stream: tasks decoded in worker processes, then routed and predicted
in fixed-size batches through :func:`models.route.route_batch` and
:func:`models.predict.predict_batch`, one result row per image.

Memory stays bounded whatever the input: at most a window of decoded tasks is in flight and
rows leave as soon as their batch is predicted. Decoding runs in processes, not threads: the
image loader silences library loggers under one process-wide lock, so threads would decode one
at a time. A worker that dies (a decoder crashing on a hostile file) is replaced; the file that
killed it becomes an error row, the others in flight are decoded again.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from imaging import MODALITIES
from models.batch.sources import Decoded, Source, Task, View, ViewSpec, decode_task, open_source
from models.batch.spawning import SpawnWithoutMain
from models.card import TASKS, ModelCard
from models.predict import Prediction, predict_batch
from models.registry import (
    LoadedModel,
    ModelUnavailable,
    find_card,
    load_model,
    sha256_bytes,
)
from models.route import Routing, load_router, route_batch, unrecognised

__all__ = [
    "BatchOptions",
    "ModelSet",
    "TaskResult",
    "decode_stream",
    "default_workers",
    "format_value",
    "iter_results",
    "rank_key",
    "result_columns",
    "spreadsheet_safe",
    "stream",
    "write_results",
]

HEAD_COLUMNS = ("file", "modality", "task", "modality_source", "modality_confidence", "model",
                "label", "confidence")
TAIL_COLUMNS = ("in_distribution", "ood_score", "uncertain", "uncertainty", "tta_agreement",
                "warnings", "width", "height", "frame", "dicom_modality", "body_part", "error")
CRASHED = "the image decoder stopped unexpectedly on this file"

Row = dict[str, object]


def default_workers() -> int:
    """Decoding processes beside this one: one core is left for inference, at most four."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(4, (os.cpu_count() or 1) // local_world - 1))


@dataclass(frozen=True)
class BatchOptions:
    """How a batch is read and predicted. ``modality`` / ``task``: insist on one (a task
    implies its modality; else the DICOM tag, else the router); ``router``: run the modality
    router (needed without ``modality`` or ``task``);
    ``views``: the three test-time views behind the uncertainty signal (4 forward passes per
    image instead of 1); ``all_frames``: one row per frame of multi-frame files (else the
    middle frame); ``batch_size``: images per inference step and input rows per forward pass
    (an image with its views is 4 rows), fixed so results do not depend on neighbours: small
    passes are fastest on a CPU, raise it on a GPU; ``workers``: decoding processes (0: decode
    in this process)."""

    modality: str | None = None
    task: str | None = None
    weights_dir: Path | None = None
    router: bool = True
    views: bool = True
    all_frames: bool = True
    batch_size: int = 4
    workers: int = 1
    device: str | None = None

    def __post_init__(self) -> None:
        if self.modality is not None and self.modality not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}; choose one of "
                             f"{', '.join(MODALITIES)}")
        if self.task is not None:
            if self.task not in TASKS or self.modality not in (None, TASKS[self.task].modality):
                raise ValueError(f"task {self.task!r} is not a task of modality "
                                 f"{self.modality}; tasks: {', '.join(TASKS)}")
            object.__setattr__(self, "modality", TASKS[self.task].modality)
        if not self.router and self.modality is None:
            raise ValueError("without the router a modality must be given (--modality)")
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError("the batch size must be 1 or more and workers 0 or more")


class ModelSet:
    """The router and the diagnosis models a run uses, one per (modality, task), each loaded
    once, when first needed.

    With ``options.modality`` (or ``task``) that model loads at once (raising
    :class:`ModelUnavailable`); otherwise a modality or task without a usable model fails only
    its own rows.
    """

    def __init__(self, options: BatchOptions) -> None:
        self.options = options
        root = options.weights_dir
        self.cards: dict[tuple[str, str], tuple[Path, ModelCard]] = {}
        self._default_task: dict[str, str] = {}
        self._failed: dict[tuple[str, str | None], ModelUnavailable] = {}
        for modality in [options.modality] if options.modality else MODALITIES:
            try:
                folder, card = find_card(modality, root, options.task)
            except ModelUnavailable as exc:
                if options.modality:
                    raise
                self._failed[(modality, None)] = exc
                continue
            self._default_task[modality] = card.task
            self.cards[(modality, card.task)] = folder, card
            for task in [] if options.task else [t for t, spec in TASKS.items()
                                                  if spec.modality == modality]:
                with contextlib.suppress(ModelUnavailable):  # a task without a model
                    self.cards.setdefault((modality, task), find_card(modality, root, task))
        self._loaded: dict[tuple[str, str], LoadedModel] = {}
        if options.modality:
            self.diagnosis(options.modality, options.task)
        self.router = load_router(root) if options.router else None

    @property
    def classes(self) -> list[str]:
        """Every class of the run's diagnosis models, in modality and task order, each once."""
        return list(dict.fromkeys(c for _, card in self.cards.values() for c in card.classes))

    def spec(self) -> ViewSpec:
        """The model views a worker computes for this run."""
        router = self.router.card if self.router else None
        views: dict[str, tuple[View, ...]] = {}
        for (modality, _), (_, card) in self.cards.items():
            views[modality] = tuple(dict.fromkeys(
                [*views.get(modality, ()), (card.preprocessing, card.input_size)]))
        return ViewSpec((router.preprocessing, router.input_size) if router else None, views,
                        self.options.modality, self.options.all_frames)

    def diagnosis(self, modality: str, task: str | None = None) -> LoadedModel:
        """The loaded model of ``modality`` and ``task`` (default: the modality's default
        model); raises :class:`ModelUnavailable`."""
        if (modality, None) in self._failed:
            raise self._failed[(modality, None)]
        key = (modality, task or self._default_task.get(modality, ""))
        if key in self._failed:
            raise self._failed[key]
        if key not in self._loaded:
            try:
                folder = (self.cards[key][0] if key in self.cards
                          else find_card(modality, self.options.weights_dir, task)[0])
                self._loaded[key] = load_model(folder, self.options.device)
            except ModelUnavailable as exc:
                self._failed[key] = exc
                raise
        return self._loaded[key]

    def fingerprint(self) -> dict[str, str]:
        """Model name -> a sha256 of its weights, trust statistics, temperature and decision
        threshold: what a resumed run must still use."""
        cards = [card for _, card in self.cards.values()] + ([self.router.card] if self.router else [])
        return {card.name: sha256_bytes(f"{card.sha256} {card.trust.get('sha256')} "
                                        f"{card.temperature} {card.decision_threshold}".encode())
                for card in cards}


@dataclass(frozen=True)
class TaskResult:
    """The rows of one task: one per image it held (none for a video chunk found past the
    video's real end)."""

    task: Task
    rows: list[Row]


def result_columns(classes: Sequence[str]) -> list[str]:
    """The columns of ``results.csv``: identity and routing, the label, ``p_<class>`` for each
    class, trust signals, de-identified image facts, and ``error``."""
    return [*HEAD_COLUMNS, *(f"p_{c}" for c in classes), *TAIL_COLUMNS]


def iter_results(location: Source | str | os.PathLike[str] | Sequence[tuple[str, bytes]],
                 options: BatchOptions | None = None, *, models: ModelSet | None = None,
                 on_images: Callable[[int], None] | None = None) -> Iterator[Row]:
    """One result row per image of ``location`` (a :class:`Source`, a path
    :func:`models.batch.sources.open_source` reads, or (name, bytes) uploads), in input order.
    Values are Python values (``None`` when empty); :func:`write_results` writes them. Pass
    ``models`` (a :class:`ModelSet` of the same options) to keep models loaded between calls."""
    options = options or BatchOptions()
    source = location if isinstance(location, Source) else open_source(location)
    for result in stream(source, options, models or ModelSet(options), on_images=on_images):
        yield from result.rows


def stream(source: Source, options: BatchOptions, models: ModelSet, *,
           skip: Iterable[int] = (), rank: int = 0, world: int = 1,
           on_images: Callable[[int], None] | None = None) -> Iterator[TaskResult]:
    """The results of this shard's tasks (task index modulo ``world`` is ``rank``) except those
    in ``skip``, task by task in input order; ``on_images`` hears how many images each batch
    finished."""
    done = set(skip)
    tasks = (task for task in source.tasks() if task.index % world == rank and task.index not in done)
    window = max(2 * options.batch_size, 4 * options.workers)
    pending: list[tuple[Task, list[Decoded]]] = []
    images = 0
    for task, decoded in decode_stream(tasks, models.spec(), options.workers, window):
        pending.append((task, decoded))
        images += len(decoded)
        if images >= options.batch_size:
            yield from _predict(pending, models)
            if on_images:
                on_images(images)
            pending, images = [], 0
    if pending:
        yield from _predict(pending, models)
        if on_images:
            on_images(images)


def decode_stream(tasks: Iterable[Task], spec: ViewSpec, workers: int,
                  window: int) -> Iterator[tuple[Task, list[Decoded]]]:
    """Each task with its decoded images, in order; ``workers`` processes decode up to
    ``window`` tasks ahead (0 workers: in this process)."""
    if workers <= 0:
        for task in tasks:
            yield task, decode_task(task, spec)
        return
    decoders = _Decoders(spec, workers)
    pending: deque[tuple[Task, Future[list[Decoded]]]] = deque()
    try:
        for task in tasks:
            pending.append((task, decoders.submit(task)))
            if len(pending) >= window:
                done, future = pending.popleft()
                yield done, decoders.result(done, future)
        while pending:
            done, future = pending.popleft()
            yield done, decoders.result(done, future)
    finally:
        decoders.close()


class _Decoders:
    """Worker processes decoding tasks. A worker that dies (a decoder crashing on a hostile
    file) breaks the pool: a fresh pool takes the next tasks, and each task that was in flight
    is decoded again alone in a fresh process, where the one that kills it becomes an error."""

    def __init__(self, spec: ViewSpec, workers: int) -> None:
        self.spec, self.workers = spec, workers
        self.pool = self._start(workers)

    @staticmethod
    def _start(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=SpawnWithoutMain())

    def submit(self, task: Task) -> Future[list[Decoded]]:
        try:
            return self.pool.submit(decode_task, task, self.spec)
        except BrokenProcessPool:
            self._renew()
            return self.pool.submit(decode_task, task, self.spec)

    def result(self, task: Task, future: Future[list[Decoded]]) -> list[Decoded]:
        try:
            return future.result()
        except BrokenProcessPool:
            try:
                self.pool.submit(int)  # the pool in use may already be a fresh one
            except BrokenProcessPool:
                self._renew()
            with self._start(1) as alone:
                try:
                    return alone.submit(decode_task, task, self.spec).result()
                except BrokenProcessPool:
                    return [Decoded(task.name, error=CRASHED)]

    def _renew(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._start(self.workers)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _predict(batch: list[tuple[Task, list[Decoded]]], models: ModelSet) -> Iterator[TaskResult]:
    """Route and predict every readable image of ``batch``; rows task by task."""
    options = models.options
    images = [d for _, decoded in batch for d in decoded if d.error is None]
    router_view = models.spec().router
    routings = route_batch(models.router, [d.views[router_view] for d in images] if router_view else [],
                           [d.tagged for d in images], options.modality, options.task,
                           pass_rows=options.batch_size)
    outcomes: dict[int, tuple[LoadedModel, Prediction] | str] = {}
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, routing in enumerate(routings):
        if routing.modality is None:
            outcomes[i] = unrecognised(routing)
        else:
            groups.setdefault((routing.modality, routing.task), []).append(i)
    for (modality, task), members in groups.items():
        try:
            loaded = models.diagnosis(modality, task)
        except ModelUnavailable as exc:
            outcomes.update((i, str(exc)) for i in members)
            continue
        view = (loaded.card.preprocessing, loaded.card.input_size)
        predictions = predict_batch(loaded, [images[i].views[view] for i in members],
                                    views=options.views, pass_rows=options.batch_size)
        outcomes.update((i, (loaded, p)) for i, p in zip(members, predictions, strict=True))
    classes = models.classes
    position = 0
    for task, decoded in batch:
        rows = []
        for image in decoded:
            if image.error is not None:
                rows.append(_row(image, classes, error=image.error))
                continue
            outcome, routing = outcomes[position], routings[position]
            position += 1
            if isinstance(outcome, str):
                rows.append(_row(image, classes, routing, error=outcome))
            else:
                rows.append(_row(image, classes, routing, *outcome, views=options.views))
        yield TaskResult(task, rows)


def _row(image: Decoded, classes: Sequence[str], routing: Routing | None = None,
         loaded: LoadedModel | None = None, prediction: Prediction | None = None, *,
         views: bool = True, error: str | None = None) -> Row:
    row: Row = dict.fromkeys(result_columns(classes))
    row.update(file=image.file, error=error, **{k: image.meta.get(k) for k in
                                                ("width", "height", "frame", "dicom_modality",
                                                 "body_part")})
    if routing is not None:
        row.update(modality=routing.modality, task=routing.task, modality_source=routing.source,
                   modality_confidence=routing.confidence, warnings=routing.warnings)
    if loaded is not None and prediction is not None:
        row.update(model=loaded.card.name, task=loaded.card.task, label=prediction.label,
                   confidence=prediction.confidence,
                   in_distribution=prediction.in_distribution, ood_score=prediction.ood_score,
                   uncertain=prediction.uncertain, uncertainty=prediction.uncertainty,
                   tta_agreement=prediction.tta_agreement if views else None,
                   warnings=routing.warnings + prediction.warnings if routing else prediction.warnings,
                   **{f"p_{c}": p for c, p in prediction.probabilities.items()})
    return row


def format_value(value: object) -> str:
    """A row value as CSV text: empty for ``None``, ``true``/``false``, floats to 6 decimals,
    lists joined by `` | ``, line breaks flattened (one row is one line)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list | tuple):
        return " | ".join(format_value(v) for v in value)
    return " ".join(str(value).splitlines())


def rank_key(rank_by: str) -> Callable[[Mapping[str, object]], tuple[bool, float]]:
    """Sort key putting rows by the probability of class ``rank_by``, highest first, rows
    without it (errors, other modalities) last; a stable sort keeps input order among ties."""
    column = f"p_{rank_by}"

    def key(row: Mapping[str, object]) -> tuple[bool, float]:
        value = row.get(column)
        missing = value is None or value == ""
        return missing, 0.0 if missing else -float(value)  # type: ignore[arg-type]

    return key


def spreadsheet_safe(value: str) -> str:
    """Text a spreadsheet would run as a formula (a file named ``=cmd...``) quoted with ``'``."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def write_results(rows: Iterable[Mapping[str, object]], target: Path | TextIO,
                  columns: Sequence[str]) -> Path | TextIO:
    """Write ``rows`` (only ``columns``, formatted by :func:`format_value`) as CSV to ``target``:
    a path (replaced only once complete) or an open text stream. File names are
    :func:`spreadsheet_safe`."""
    if not isinstance(target, Path):
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([spreadsheet_safe(format_value(row.get(c))) if c == "file"
                             else format_value(row.get(c)) for c in columns])
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        write_results(rows, handle, columns)
    os.replace(partial, target)
    return target
