"""The downloadable report of one analysis, as self-contained HTML and as PDF.

Both renderings come from one :class:`ReportContent`, so they always say the same thing. Page 1
is what a clinician files: the warnings first, the image the model saw, the prediction with the
model's test accuracy and its 95% CI, the heat maps with their colour bar and native grid, an
optional case note and one compact model line. Technical detail (all class probabilities,
timings, layers, checksums, de-identified image metadata) sits in a small appendix.

Only de-identified image metadata (format, modality, size, frame) is included; patient
identifiers never reach this module. The case note is typed by the user for this report only:
it is never stored or logged, and runs of six or more digits (record or accession numbers,
dates of birth) are replaced before it is printed.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import cv2
import numpy as np

from models.card import ModelCard, headline
from models.card_text import headline_text
from xai.engine import Explanation
from xai.legend import COLORBAR_CAPTION, colorbar, grid_text, map_notes

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = ["CASE_NOTE_LIMIT", "DISCLAIMER", "ReportContent", "build_report_content",
           "clean_case_note", "png_bytes", "report_html", "report_pdf"]

DISCLAIMER = ("Research and decision-support output, not a diagnosis and not a medical device. "
              "A qualified clinician must review the image and this output.")
CASE_NOTE_LIMIT = 1000
_SAFE_META = ("format", "modality", "body_part", "width", "height", "frame", "frame_count")
_LONG_NUMBER = re.compile(r"\d(?:[\s./-]?\d){5,}")


@dataclass(frozen=True)
class ReportContent:
    """Everything a report shows, already formatted as text and PNG bytes.

    Page 1: ``title``, ``created``, ``warnings``, ``image_png``, ``summary`` (prediction facts),
    ``headline`` (test accuracy with its CI), ``top_probabilities``, ``maps`` (caption, overlay
    PNG), ``colorbar_png``, ``map_notes``, ``case_note`` and ``model_line``. Appendix:
    ``probabilities`` (all classes), ``technical`` and ``model`` (the card's facts).
    """

    title: str
    created: str
    summary: list[tuple[str, str]]
    probabilities: list[tuple[str, str]]
    model: list[tuple[str, str]]
    image_png: bytes
    maps: list[tuple[str, bytes]]
    warnings: list[str]
    headline: str = ""
    model_line: str = ""
    top_probabilities: list[tuple[str, float]] = field(default_factory=list)
    colorbar_png: bytes = b""
    map_notes: list[str] = field(default_factory=list)
    case_note: str = ""
    technical: list[tuple[str, str]] = field(default_factory=list)


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of a uint8 RGB array."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes()


def clean_case_note(note: str | None) -> str:
    """The case note as printed: trimmed, control characters dropped, at most
    ``CASE_NOTE_LIMIT`` characters, runs of six or more digits replaced by ``[number removed]``."""
    if not note:
        return ""
    text = "".join(c for c in note if c.isprintable() or c == "\n").strip()
    text = _LONG_NUMBER.sub("[number removed]", text)
    return text if len(text) <= CASE_NOTE_LIMIT else text[:CASE_NOTE_LIMIT - 3] + "..."


def _model_line(card: ModelCard) -> str:
    data = card.data.get("name", "unknown data")
    licence = card.data.get("licence")
    return (f"Model {card.name} ({card.arch}, {card.input_size} px, {len(card.classes)} classes), "
            f"trained on {data}" + (f"; licence: {licence}" if licence else "") + ".")


def build_report_content(
    explanation: Explanation,
    card: ModelCard,
    overlays: Mapping[str, np.ndarray],
    image_meta: Mapping[str, object],
    *,
    warnings: Sequence[str] = (),
    modality_source: str | None = None,
    created: datetime | None = None,
    case_note: str | None = None,
    cmap: str = "turbo",
) -> ReportContent:
    """Collect the report's facts; ``overlays`` maps a method name to its rendered overlay
    (drawn with colour map ``cmap``, which the colour bar shows); ``warnings`` (routing,
    out-of-distribution, uncertainty) head the report and mark the label as not reliable;
    ``case_note`` is the user's free text for this report (see :func:`clean_case_note`)."""
    if explanation.image is None:
        raise ValueError("the explanation carries no image; explain it from an image")
    created = created or datetime.now(UTC)
    order = np.argsort(-explanation.probabilities)
    names = explanation.class_names or [str(i) for i in range(len(order))]
    test_accuracy = card.metrics.get("accuracy")
    cams = [explanation.maps[name] for name in overlays]
    maps = [(f"{cam.label}: {grid_text(cam)}" if cam.grids else cam.label, png_bytes(img))
            for cam, img in zip(cams, overlays.values(), strict=True)]
    height, width = explanation.image.shape[:2]
    return ReportContent(
        title=f"MedXAI report: {explanation.label} ({explanation.confidence:.1%})"
              + (" - NOT RELIABLE, see warnings" if warnings else ""),
        created=created.strftime("%Y-%m-%d %H:%M UTC"),
        summary=[
            ("Prediction", explanation.label),
            ("Confidence", f"{explanation.confidence:.1%}"),
            ("Maps explain class", explanation.target_label),
            *([("Modality chosen by", modality_source)] if modality_source else []),
        ],
        probabilities=[(names[i], f"{explanation.probabilities[i]:.2%}") for i in order],
        model=[
            ("Model", card.name), ("Modality", card.modality), ("Architecture", card.arch),
            ("Input", f"{card.input_size} px, preprocessing {card.preprocessing}"),
            ("Classes", ", ".join(card.classes)),
            ("Training data", str(card.data.get("name", "unknown"))),
            ("Data licence", str(card.data.get("licence", "unknown"))),
            ("Test accuracy", f"{test_accuracy:.2%}" if isinstance(test_accuracy, float) else "n/a"),
            ("Headline figures", headline(card).sentence),
            ("Softmax temperature", f"{card.temperature:.3f}"),
            ("Weights sha256", card.sha256), ("Code version", card.code_version),
        ],
        image_png=png_bytes(explanation.image),
        maps=maps,
        warnings=list(warnings),
        headline=headline_text(card),
        model_line=_model_line(card),
        top_probabilities=[(names[i], float(explanation.probabilities[i])) for i in order[:4]],
        colorbar_png=png_bytes(colorbar(cmap, length=160, thickness=12, labels=False)),
        map_notes=[f"{cam.label}: {note}" for cam in cams
                   for note in map_notes(cam, explanation.target_label)],
        case_note=clean_case_note(case_note),
        technical=[
            ("Image as the model saw it", f"{width} x {height} px"),
            ("Shared forward + gradient pass", f"{explanation.pass_ms:.0f} ms"),
            *((f"{cam.label}", f"layer {cam.layer}, {grid_text(cam) or 'grid unknown'}, "
               f"{cam.ms:.0f} ms" + (", flat" if cam.flat else "")) for cam in cams),
            *((f"Image {k.replace('_', ' ')}", str(image_meta[k])) for k in _SAFE_META
              if image_meta.get(k) not in (None, "")),
        ],
    )


def _table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _img(data: bytes, alt: str, css: str = "") -> str:
    return (f'<img alt="{html.escape(alt)}"{f" class={css!r}" if css else ""} '
            f'src="data:image/png;base64,{base64.b64encode(data).decode()}">')


_CSS = """body{font-family:sans-serif;margin:2em auto;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
.warn{background:#fff3cd;padding:8px;border:1px solid #e0c060}.row{display:flex;gap:1.5em;align-items:flex-start}
.label{font-size:1.8em;font-weight:bold;margin:.1em 0}.maps{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
figure{margin:0;width:200px}figure img{width:200px}figcaption{font-size:.8em}.bar{height:200px;width:14px}
.model{font-size:.9em;color:#444}.note{border:1px solid #bbb;padding:8px;white-space:pre-wrap}
.appendix{font-size:.8em;color:#444;border-top:2px solid #ccc;margin-top:2em}"""


def report_html(content: ReportContent) -> str:
    """A single self-contained HTML page (images inlined as base64); page 1 first, then the
    appendix."""
    figures = "".join(f"<figure>{_img(png, label)}<figcaption>{html.escape(label)}</figcaption>"
                      "</figure>" for label, png in content.maps)
    bar = (f'<div>high<br>{_img(content.colorbar_png, "colour bar", "bar")}<br>low</div>'
           if content.colorbar_png else "")
    probabilities = "".join(f"<li>{html.escape(name)}: {p:.1%}</li>"
                            for name, p in content.top_probabilities)
    facts = "".join(f"<div>{html.escape(k)}: <b>{html.escape(v)}</b></div>"
                    for k, v in content.summary[1:])
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in content.map_notes)
    note = (f'<h2>Case note</h2><div class="note">{html.escape(content.case_note)}</div>'
            if content.case_note else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(content.title)}</title>
<style>{_CSS}</style></head>
<body><h1>{html.escape(content.title)}</h1>
<p class="warn">{html.escape(DISCLAIMER)}</p><p>Created {html.escape(content.created)}</p>
{"".join(f'<p class="warn"><strong>Warning:</strong> {html.escape(w)}</p>' for w in content.warnings)}
<div class="row"><div>{_img(content.image_png, "image seen by the model")}</div>
<div><h2>Prediction</h2><div class="label">{html.escape(content.summary[0][1])}{
    " (not reliable)" if content.warnings else ""}</div>{facts}
<p>{html.escape(content.headline)}</p><ul>{probabilities}</ul></div></div>
<h2>Heat maps</h2><p class="model">{html.escape(COLORBAR_CAPTION)}</p>
<div class="maps">{figures}{bar}</div>{f"<ul>{notes}</ul>" if notes else ""}
{note}
<p class="model">{html.escape(content.model_line)}</p>
<section class="appendix"><h2>Appendix: technical detail</h2>
<h3>Class probabilities</h3>{_table(content.probabilities)}
<h3>Analysis</h3>{_table(content.technical)}
<h3>Model</h3>{_table(content.model)}</section>
</body></html>
"""


def _latin1(value: str) -> str:
    return value.encode("latin-1", "replace").decode("latin-1")


def report_pdf(content: ReportContent) -> bytes:
    """The same report as an A4 PDF (fpdf2, core fonts: text is reduced to Latin-1): page 1
    for the clinician, then the appendix."""
    from fpdf import FPDF

    text = _latin1
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 7, text(content.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 8)
    pdf.cell(0, 5, text(f"Created {content.created}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_fill_color(255, 243, 205)
    pdf.multi_cell(0, 4.5, text(DISCLAIMER), fill=True, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "B", 9)
    for warning in content.warnings:
        pdf.ln(1)
        pdf.multi_cell(0, 4.5, text(f"Warning: {warning}"), fill=True, new_x="LMARGIN",
                       new_y="NEXT")
    _prediction_block(pdf, content)
    _maps_block(pdf, content)
    if content.case_note:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 6, "Case note", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 4.5, text(content.case_note), border=1, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 8)
    pdf.set_text_color(70, 70, 70)
    pdf.multi_cell(0, 4, text(content.model_line + " Technical detail: appendix."),
                   new_x="LMARGIN", new_y="NEXT")
    _appendix(pdf, content)
    return bytes(pdf.output())


def _prediction_block(pdf: FPDF, content: ReportContent) -> None:
    """The image (left) beside the prediction, test-accuracy CI and top probabilities."""
    text = _latin1
    pdf.ln(3)
    top, side = pdf.get_y(), 62.0
    pdf.image(io.BytesIO(content.image_png), x=pdf.l_margin, y=top, w=side, h=side)
    x = pdf.l_margin + side + 6
    width = pdf.w - pdf.r_margin - x
    pdf.set_xy(x, top)
    pdf.set_font("Helvetica", "", 8)
    pdf.set_text_color(90, 90, 90)
    pdf.cell(width, 4, "Prediction (image as the model saw it, left)", new_x="LEFT", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", "B", 18)
    pdf.multi_cell(width, 9, text(content.summary[0][1] + (" (not reliable)" if content.warnings
                                                           else "")), new_x="LEFT", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for key, value in content.summary[1:]:
        pdf.multi_cell(width, 4.8, text(f"{key}: {value}"), new_x="LEFT", new_y="NEXT")
    pdf.set_xy(x, pdf.get_y() + 1.5)
    pdf.set_font("Helvetica", "B", 9)
    pdf.multi_cell(width, 4.8, text(content.headline), align="L", new_x="LEFT", new_y="NEXT")
    pdf.set_xy(x, pdf.get_y() + 1.5)
    pdf.set_font("Helvetica", "", 8)
    for name, p in content.top_probabilities:
        y = pdf.get_y()
        pdf.set_fill_color(200, 200, 200)
        pdf.rect(x + 40, y + 0.8, 50, 2.6, style="F")
        pdf.set_fill_color(60, 110, 180)
        pdf.rect(x + 40, y + 0.8, 50 * p, 2.6, style="F")
        pdf.cell(40, 4.2, text(name), new_x="RIGHT")
        pdf.set_x(x + 92)
        pdf.cell(20, 4.2, f"{p:.1%}", new_x="LEFT", new_y="NEXT")
        pdf.set_x(x)
    pdf.set_xy(pdf.l_margin, max(pdf.get_y(), top + side) + 4)


def _maps_block(pdf: FPDF, content: ReportContent) -> None:
    """Overlays four to a row with their captions, and the colour bar beside the first row."""
    text = _latin1
    if not content.maps:
        return
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 6, "Heat maps", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 7.5)
    pdf.set_text_color(70, 70, 70)
    pdf.multi_cell(0, 3.8, text(COLORBAR_CAPTION), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(1)
    tile, gap, per_row, caption = 40.0, 3.0, 4, 10.0
    for start in range(0, len(content.maps), per_row):
        if pdf.get_y() + tile + caption > pdf.h - pdf.b_margin:
            pdf.add_page()
        y = pdf.get_y()
        for col, (label, png) in enumerate(content.maps[start:start + per_row]):
            x = pdf.l_margin + col * (tile + gap)
            pdf.image(io.BytesIO(png), x=x, y=y, w=tile, h=tile)
            pdf.set_xy(x, y + tile + 0.5)
            pdf.set_font("Helvetica", "", 6.5)
            pdf.multi_cell(tile, 3, text(label), align="L", new_x="LMARGIN", new_y="NEXT")
        if content.colorbar_png:
            x = pdf.l_margin + per_row * (tile + gap)
            pdf.image(io.BytesIO(content.colorbar_png), x=x, y=y, w=3.5, h=tile)
            pdf.set_font("Helvetica", "", 6.5)
            pdf.text(x + 4.5, y + 2.5, "high")
            pdf.text(x + 4.5, y + tile, "low")
        pdf.set_xy(pdf.l_margin, y + tile + caption)
    pdf.set_font("Helvetica", "", 7.5)
    for note in content.map_notes:
        pdf.multi_cell(0, 3.8, text(f"Note - {note}"), align="L", new_x="LMARGIN", new_y="NEXT")


def _appendix(pdf: FPDF, content: ReportContent) -> None:
    """Small print on a page of its own: probabilities, analysis and model facts."""
    text = _latin1
    pdf.add_page()
    pdf.set_text_color(60, 60, 60)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, "Appendix: technical detail", new_x="LMARGIN", new_y="NEXT")
    for heading, rows in (("Class probabilities", content.probabilities),
                          ("Analysis", content.technical), ("Model", content.model)):
        pdf.set_font("Helvetica", "B", 8)
        pdf.cell(0, 5, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 7)
        for key, value in rows:
            pdf.multi_cell(0, 3.6, text(f"{key}: {value}"), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
