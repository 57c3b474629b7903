"""The heat maps of a batch's top-ranked images, drawn on the original images, and
``summary.html``: counts, the distribution of the ranked class's probability, the ranked list
and the maps, in one file that opens offline (images inlined, no scripts, no links out).

Maps are computed on the model's view (:func:`xai.explain_view`) and put back on the image
the view was cut from (:meth:`imaging.geometry.ViewGeometry.to_image`), so an MRI's
map lies on the slice as loaded, not on the cropped brain.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from imaging import ImageInputError
from imaging.preprocess import preprocess_with_geometry
from models.batch.pipeline import ModelSet, Row
from models.batch.sources import Source, load_original
from models.card_text import headline_text
from models.registry import ModelUnavailable
from xai import DEFAULT_METHODS, explain_view, resolve_methods
from xai.legend import COLORBAR_CAPTION, grid_text, map_notes, with_colorbar
from xai.overlay import overlay, save_png
from xai.report import DISCLAIMER, png_bytes

__all__ = ["LISTED_ROWS", "Explained", "explain_rows", "summary_html", "write_summary"]

LISTED_ROWS = 50
THUMBNAIL = 256


@dataclass(frozen=True)
class Explained:
    """One explained row: its rank (1 = top), the original as a thumbnail, and per method the
    full-resolution overlay file, a thumbnail of it with its colour bar, and a caption (the
    map's native grid, and what may make it mislead); or why it could not be explained."""

    rank: int
    row: Row
    thumbnail: bytes = b""
    files: dict[str, Path] = field(default_factory=dict)
    previews: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def explain_rows(rows: Sequence[Row], source: Source, models: ModelSet, folder: Path | None,
                 target: str | None, methods: Sequence[str] | None = None) -> list[Explained]:
    """Maps of ``methods`` (the app's defaults) for each row with a prediction, explaining class
    ``target`` where the row's model has it (else its label), saved as
    ``folder/rank0001_<method>.png`` over the original image (``None``: kept in memory as
    thumbnails only)."""
    wanted = {int(row["input_index"]) for row in rows}  # type: ignore[call-overload]
    tasks = {task.index: task for task in source.tasks() if task.index in wanted}
    explained = []
    for rank, row in enumerate(rows, start=1):
        if row.get("error") or not row.get("modality"):
            continue
        try:
            loaded = models.diagnosis(str(row["modality"]), str(row.get("task") or "") or None)
            frame = row.get("frame")
            image = load_original(tasks[int(row["input_index"])],  # type: ignore[call-overload]
                                  int(frame) if frame not in (None, "") else None)  # type: ignore[call-overload]
        except (ImageInputError, ModelUnavailable) as exc:
            explained.append(Explained(rank, row, error=str(exc)))
            continue
        names = resolve_methods(list(methods or DEFAULT_METHODS), loaded.arch.stage_layers)
        view, geometry = preprocess_with_geometry(image.rgb, loaded.card.preprocessing,
                                                  loaded.card.input_size)
        result, = explain_view(loaded, view, methods=names,
                               targets=[target if target in loaded.card.classes else None])
        files, previews, captions = {}, {}, {}
        for name, cam in result.maps.items():
            placed, covered = geometry.to_image(cam.map)
            drawn = overlay(image.rgb, placed, covered=covered)
            if folder is not None:
                files[name] = save_png(folder / f"rank{rank:04d}_{name}.png", drawn)
            previews[name] = png_bytes(with_colorbar(_thumbnail(drawn)))
            captions[name] = " ".join([cam.label, grid_text(cam),
                                       *map_notes(cam, result.target_label)]).strip()
        explained.append(Explained(rank, row, png_bytes(_thumbnail(image.rgb)), files, previews,
                                   captions))
    return explained


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    scale = THUMBNAIL / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def write_summary(path: Path, rows: Sequence[Row], explained: Sequence[Explained], *,
                  rank_by: str | None, title: str, models: ModelSet) -> Path:
    """Write ``summary.html`` for ``rows`` (ranked, as in ``results.csv``) and their maps, each
    map linked to its full-resolution file."""
    path.write_text(summary_html(rows, explained, rank_by=rank_by, title=title, models=models,
                                 root=path.parent), encoding="utf-8")
    return path


def summary_html(rows: Sequence[Row], explained: Sequence[Explained], *, rank_by: str | None,
                 title: str, models: ModelSet, root: Path | None = None) -> str:
    """The summary page of ``rows`` and their maps; maps with a full-resolution file link to it,
    relative to ``root``."""
    column = f"p_{rank_by}" if rank_by else None
    read = [r for r in rows if not r.get("error")]
    counts = [("images", len(rows)), ("predicted", len(read)),
              ("unreadable or not predicted", len(rows) - len(read)),
              ("with a warning (routing, out of distribution or uncertain)",
               sum(1 for r in rows if r.get("warnings"))),
              *((f"{modality}: {label}", n) for (modality, label), n in
                sorted(Counter((r["modality"], r["label"]) for r in read).items()))]
    listed = rows[:LISTED_ROWS]
    heading = (f"Ranked by the probability of {rank_by}" if rank_by else "In input order")
    models_used = ", ".join([card.name for _, card in models.cards.values()]
                            + ([models.router.card.name] if models.router else []))
    body = [
        f"<h1>MedXAI batch triage</h1><p class=warn>{_e(DISCLAIMER)}</p>",
        f"<p>Input: {_e(title)}<br>Created {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"{_e(models_used)}. Every row is in <code>results.csv</code>.</p>",
        "<h2>Counts</h2>" + _table(["", "n"], [[k, str(v)] for k, v in counts]),
    ]
    cards = {card.name: card for _, card in models.cards.values()}
    used = sorted({str(r["model"]) for r in read if r.get("model") in cards})
    if used:
        body.append("<h2>Models that read these images</h2>" + _table(
            ["model", "how good it is"], [[name, headline_text(cards[name])] for name in used]))
    if column:
        values = [float(r[column]) for r in read if r.get(column) not in (None, "")]  # type: ignore[arg-type]
        if values:
            body.append(f"<h2>Distribution of p({_e(rank_by)})</h2>"
                        + _img(_histogram(values, f"p({rank_by})"), f"histogram of p({rank_by})",
                               "plot"))
    body.append(f"<h2>{_e(heading)}: the first {len(listed)} of {len(rows)}</h2>" + _table(
        ["rank", "file", "modality", "label", "confidence", *([f"p({rank_by})"] if rank_by else []),
         "flags (hover for the full text)"],
        [[str(i), _text(r.get("file")), _text(r.get("modality")), _text(r.get("label")),
          _percent(r.get("confidence")), *([_percent(r.get(column))] if column else []),
          _Flags(r)] for i, r in enumerate(listed, start=1)]))
    if explained:
        linked = root is not None and any(item.files for item in explained)
        body.append(f"<h2>Heat maps of the top {len(explained)}, on the original images</h2>"
                    f"<p>Maps explain the class {_e(rank_by)}. {_e(COLORBAR_CAPTION)}"
                    + (" Click a map for its full-resolution PNG." if linked else "") + "</p>")
        body.extend(_explained(item, root, rank_by) for item in explained)
    return _PAGE.format(body="\n".join(body))


def _explained(item: Explained, root: Path | None, rank_by: str | None) -> str:
    row = item.row
    caption = (f"#{item.rank} {row.get('file')}: {row.get('label')} "
               f"({_text(row.get('confidence'))})"
               + (f", p({rank_by}) {_text(row.get(f'p_{rank_by}'))}" if rank_by else ""))
    if item.error:
        return f"<section><h3>{_e(caption)}</h3><p>Not drawn: {_e(item.error)}</p></section>"
    figures = [f"<figure>{_img(item.thumbnail, 'original')}<figcaption>original</figcaption></figure>"]
    for name, preview in item.previews.items():
        text, drawn = item.captions[name], _img(preview, item.captions[name])
        if root is not None and name in item.files:
            drawn = f'<a href="{_e(item.files[name].relative_to(root).as_posix())}">{drawn}</a>'
        figures.append(f"<figure>{drawn}<figcaption>{_e(text)}</figcaption></figure>")
    warnings = row.get("warnings")
    note = f"<p class=warn>{_e(str(warnings))}</p>" if warnings else ""
    return f"<section><h3>{_e(caption)}</h3>{note}{''.join(figures)}</section>"


def _histogram(values: Sequence[float], label: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 2.6), dpi=100)
    axis.hist(values, bins=20, range=(0, 1), color="#c0392b")
    axis.set(xlabel=label, ylabel="images")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


class _Flags(str):
    """The short flags of a row (its error, or which warnings it has); the full text on hover."""

    def __new__(cls, row: Row) -> _Flags:
        error, warnings = _text(row.get("error")), _text(row.get("warnings"))
        flags = [name for name, on in (("out of distribution", row.get("in_distribution") == "false"),
                                       ("uncertain", row.get("uncertain") == "true")) if on]
        if warnings and len(warnings.split(" | ")) > len(flags):
            flags.insert(0, "modality doubtful")
        text = super().__new__(cls, "error" if error else ", ".join(flags))
        text.detail = error or warnings
        return text


def _percent(value: object) -> str:
    return "" if value in (None, "") else f"{float(value):.1%}"  # type: ignore[arg-type]


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _e(value: object) -> str:
    return html.escape(_text(value))


def _img(png: bytes, alt: str, css: str = "") -> str:
    return (f'<img alt="{_e(alt)}"{f" class={css}" if css else ""} '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def _cell(value: str) -> str:
    detail = getattr(value, "detail", "")
    return f'<td title="{_e(detail)}">{_e(value)}</td>' if detail else f"<td>{_e(value)}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MedXAI batch triage</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}
table{{border-collapse:collapse;margin:1em 0}} th,td{{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:90%}} figure{{display:inline-block;margin:6px;vertical-align:top}}
img{{max-width:290px}} img.plot{{max-width:640px}}
figcaption{{max-width:290px;font-size:85%}} .warn{{background:#fff3cd;padding:6px;border:1px solid #e0c060}}
section{{border-top:1px solid #ddd;margin-top:1em}}</style></head>
<body>
{body}
</body></html>
"""

