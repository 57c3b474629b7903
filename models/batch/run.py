"""A resumable batch run into a folder, in one process or sharded under ``torchrun``.

``DIR/parts/part-<rank>.csv`` is the journal: each finished task's rows are appended in one
write, with the task number, the row's place in the task and the task's row count, so a run
killed at any point leaves only whole tasks behind (a torn last task is dropped when the run
starts again). ``DIR/run.json`` records what decides the rows (input, options, the models'
checksums); a rerun with the same arguments skips every task already in the journal, and one
with other arguments is refused unless ``restart``. Under torchrun every rank takes the tasks
whose number modulo the world size is its rank and journals them in its own part; rank 0
merges the parts into ``DIR/results.csv`` (input order, or ranked), then draws the top maps and
``DIR/summary.html`` (:mod:`models.batch.summary`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from models.batch.pipeline import (
    BatchOptions,
    ModelSet,
    Row,
    TaskResult,
    format_value,
    rank_key,
    result_columns,
    stream,
    write_results,
)
from models.batch.sources import Source, open_source
from models.device import Distributed

__all__ = ["RESULTS_FILE", "SUMMARY_FILE", "MemoryRun", "RunConflict", "RunReport", "run_batch",
           "run_in_memory"]

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.html"
RUN_FILE = "run.json"
PARTS_DIR = "parts"
MAPS_DIR = "maps"
JOURNAL_COLUMNS = ("input_index", "image_index", "images")
"""Before the result columns in the journal: the input (task) number, the row's place among the
input's images, and how many images the input held."""
# Ranks wait for the slowest at the end; torch's default of 30 minutes is too short for that.
BARRIER_TIMEOUT = timedelta(days=1)


@dataclass(frozen=True)
class MemoryRun:
    """A run held in memory: its rows (ranked, values as CSV text), ``results.csv`` and
    ``summary.html`` as text."""

    rows: list[Row]
    results_csv: str
    summary_html: str


class RunConflict(ValueError):
    """The output folder holds a run with other settings, or the journal is incomplete."""


@dataclass(frozen=True)
class RunReport:
    """What a finished run wrote and counted (rank 0 only)."""

    results: Path
    summary: Path
    images: int
    errors: int
    flagged: int
    maps: list[Path]
    seconds: float


def run_batch(
    location: str | os.PathLike[str] | Sequence[tuple[str, bytes]], out: Path,
    options: BatchOptions, *, every: int = 1, rank_by: str | None = None, explain_top: int = 0,
    methods: Sequence[str] | None = None, restart: bool = False,
    progress: Callable[[int, int | None, int], Callable[[int], None]] | None = None,
) -> RunReport | None:
    """Predict every image of ``location`` into ``out`` (resuming a killed run), merge, and
    with ``explain_top`` draw the maps of the top rows ranked by ``rank_by``.

    ``progress(done, total, rank)`` may return a callback told how many images each batch
    finished. Returns the report on rank 0, ``None`` on other ranks. Raises
    :class:`RunConflict`, :class:`models.batch.sources.InputError`, ``ValueError`` (a class
    unknown to the models) and :class:`models.registry.ModelUnavailable`.
    """
    start = time.perf_counter()
    out = Path(out)
    source = open_source(location, every=every, exclude=out)
    models = ModelSet(options)
    columns = result_columns(models.classes)
    _check_request(models, rank_by, explain_top, methods)
    settings = {"input": _describe(location), "kind": source.kind, "every": every,
                **{k: v for k, v in asdict(options).items() if k not in ("workers", "device")},
                "weights_dir": str(options.weights_dir) if options.weights_dir else None,
                "models": models.fingerprint(), "columns": columns}
    _check_settings(out, settings, restart)
    ranks = Distributed(options.device, BARRIER_TIMEOUT)
    try:
        if ranks.main:
            _prepare(out, settings, restart)
        ranks.barrier()
        journal = _read_journal(out)
        on_images = progress(sum(len(rows) for task, rows in journal.items()
                                 if task % ranks.world == ranks.rank),
                             _shard_total(source, ranks.world), ranks.rank) if progress else None
        _append(out / PARTS_DIR / f"part-{ranks.rank}.csv", columns,
                stream(source, options, models, skip=set(journal), rank=ranks.rank,
                       world=ranks.world, on_images=on_images))
        ranks.barrier()
        if not ranks.main:
            return None
        rows = _merge(out, source, columns, rank_by)
        from models.batch.summary import explain_rows, write_summary

        maps = explain_rows(rows[:explain_top], source, models, out / MAPS_DIR, rank_by,
                            methods) if explain_top else []
        summary = write_summary(out / SUMMARY_FILE, rows, maps, rank_by=rank_by,
                                title=_describe(location), models=models)
        return RunReport(out / RESULTS_FILE, summary, len(rows),
                         sum(1 for r in rows if r["error"]),
                         sum(1 for r in rows if r["warnings"]),
                         [path for item in maps for path in item.files.values()],
                         time.perf_counter() - start)
    finally:
        ranks.close()


def run_in_memory(uploads: Sequence[tuple[str, bytes]], options: BatchOptions, *,
                  rank_by: str | None = None, explain_top: int = 0,
                  methods: Sequence[str] | None = None,
                  on_images: Callable[[int], None] | None = None) -> MemoryRun:
    """:func:`run_batch` for (name, bytes) uploads held in memory, writing nothing to disk (an
    app's road for a large upload): the ranked rows, ``results.csv`` and ``summary.html``."""
    from models.batch.summary import explain_rows, summary_html

    source = open_source(uploads)
    models = ModelSet(options)
    columns = result_columns(models.classes)
    _check_request(models, rank_by, explain_top, methods)
    rows: list[Row] = [{"input_index": str(result.task.index),
                        **{c: format_value(row.get(c)) for c in columns}}
                       for result in stream(source, options, models, on_images=on_images)
                       for row in result.rows]
    if rank_by:
        rows.sort(key=rank_key(rank_by))
    maps = explain_rows(rows[:explain_top], source, models, None, rank_by,
                        methods) if explain_top else []
    results = io.StringIO()
    write_results(rows, results, columns)
    return MemoryRun(rows, results.getvalue(),
                     summary_html(rows, maps, rank_by=rank_by, title=_describe(uploads),
                                  models=models))


def _check_request(models: ModelSet, rank_by: str | None, explain_top: int,
                   methods: Sequence[str] | None) -> None:
    """Raise ``ValueError`` before any work for a class the models lack, maps without a class
    to draw them for, or a method that does not fit a model of the run."""
    from models.zoo import get_arch
    from xai import DEFAULT_METHODS, resolve_methods

    if rank_by is not None and rank_by not in models.classes:
        raise ValueError(f"--rank-by {rank_by!r} is not a class of the models; choose one of "
                         f"{', '.join(models.classes)}")
    if explain_top and rank_by is None:
        raise ValueError("--explain-top needs --rank-by CLASS: the maps are drawn for that class")
    for _, card in models.cards.values() if explain_top else ():
        resolve_methods(list(methods or DEFAULT_METHODS), get_arch(card.arch).stage_layers)


def _describe(location: object) -> str:
    if isinstance(location, str | os.PathLike):
        return str(Path(location).resolve())
    return f"{len(location)} uploaded files"  # type: ignore[arg-type]


def _shard_total(source: Source, world: int) -> int | None:
    total = source.expected_images()
    return None if total is None else -(-total // world)


def _check_settings(out: Path, settings: dict[str, object], restart: bool) -> None:
    """Refuse a folder holding a run with other settings (before any rank writes)."""
    path = out / RUN_FILE
    if restart or not path.is_file():
        return
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        raise RunConflict(f"{path} is unreadable; pass --restart to start over") from None
    changed = sorted(k for k in settings.keys() | previous.keys()
                     if settings.get(k) != previous.get(k))
    if changed:
        raise RunConflict(f"{out} holds a run with other settings (changed: {', '.join(changed)}); "
                          "rerun with the same arguments to resume, pass --restart to start "
                          "over, or choose another --out")


def _prepare(out: Path, settings: dict[str, object], restart: bool) -> None:
    """Rank 0, before anyone reads the journal: start over if asked, record the settings, drop
    torn tasks from every part."""
    if restart:
        for name in (PARTS_DIR, MAPS_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (RESULTS_FILE, SUMMARY_FILE, RUN_FILE):
            (out / name).unlink(missing_ok=True)
    (out / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    for part in sorted((out / PARTS_DIR).glob("part-*.csv")):
        _drop_torn_tasks(part)


def _drop_torn_tasks(part: Path) -> None:
    """Rewrite ``part`` without a torn last line and without tasks missing some of their rows."""
    data = part.read_bytes()
    whole = data[:data.rfind(b"\n") + 1]
    lines = whole.decode("utf-8").splitlines(keepends=True)
    if not lines:
        part.unlink()
        return
    rows = list(csv.reader(lines[1:]))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    kept = [line for line, row in zip(lines[1:], rows, strict=True)
            if counts[row[0]] == max(1, int(row[2]))]
    if len(whole) != len(data) or len(kept) != len(rows):
        partial = part.with_name(part.name + ".partial")
        partial.write_text(lines[0] + "".join(kept), encoding="utf-8")
        os.replace(partial, part)


def _read_journal(out: Path) -> dict[int, list[dict[str, str]]]:
    """Task number -> its journal rows, from every part."""
    tasks: dict[int, list[dict[str, str]]] = {}
    for part in sorted((out / PARTS_DIR).glob("part-*.csv")):
        with open(part, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                tasks.setdefault(int(row["input_index"]), []).append(row)
    return tasks


def _append(part: Path, columns: Sequence[str], results: Iterator[TaskResult]) -> None:
    """Journal each task's rows with one ``write``; a task without images gets a marker row."""
    fd = os.open(part, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size == 0:
            os.write(fd, _csv_lines([[*JOURNAL_COLUMNS, *columns]]))
        for result in results:
            rows = result.rows or [{}]
            subs = len(result.rows)
            os.write(fd, _csv_lines([[str(result.task.index), str(sub), str(subs),
                                      *(format_value(row.get(c)) for c in columns)]
                                     for sub, row in enumerate(rows)]))
    finally:
        os.close(fd)


def _csv_lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _merge(out: Path, source: Source, columns: Sequence[str], rank_by: str | None) -> list[Row]:
    """Every journal row in input order (then ranked), written to ``results.csv``; raises
    :class:`RunConflict` when a task is missing."""
    journal = _read_journal(out)
    total = sum(1 for _ in source.tasks())
    missing = [task for task in range(total) if task not in journal]
    if missing or len(journal) != total:
        raise RunConflict(f"{len(missing)} of {total} inputs have no results yet (first: task "
                          f"{missing[0] if missing else '?'}); run the same command again to "
                          "finish them")
    rows: list[Row] = []
    for task in sorted(journal):
        for row in sorted(journal[task], key=lambda r: int(r["image_index"])):
            if row["images"] != "0":
                rows.append(row)
    if rank_by:
        rows.sort(key=rank_key(rank_by))
    write_results(rows, out / RESULTS_FILE, columns)
    return rows
