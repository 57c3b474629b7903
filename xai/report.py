"""The downloadable report of one analysis, as self-contained HTML and as PDF.

Both renderings come from one :class:`ReportContent`, so they always say the same thing: the
image the model saw, the prediction and all class probabilities, the heat maps with their
timings, a model-card summary, the date and the disclaimer. Only de-identified image metadata
(format, modality, size, frame) is included; patient identifiers never reach this module.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import cv2
import numpy as np

from models.card import ModelCard, headline
from xai.engine import Explanation

__all__ = ["DISCLAIMER", "ReportContent", "build_report_content", "png_bytes", "report_html",
           "report_pdf"]

DISCLAIMER = ("Research and decision-support output, not a diagnosis and not a medical device. "
              "A qualified clinician must review the image and this output.")
_SAFE_META = ("format", "modality", "body_part", "width", "height", "frame", "frame_count")


@dataclass(frozen=True)
class ReportContent:
    """Everything a report shows, already formatted as text and PNG bytes."""

    title: str
    created: str
    summary: list[tuple[str, str]]
    probabilities: list[tuple[str, str]]
    model: list[tuple[str, str]]
    image_png: bytes
    maps: list[tuple[str, bytes]]
    warnings: list[str]


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of a uint8 RGB array."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes()


def build_report_content(
    explanation: Explanation,
    card: ModelCard,
    overlays: Mapping[str, np.ndarray],
    image_meta: Mapping[str, object],
    *,
    warnings: Sequence[str] = (),
    modality_source: str | None = None,
    created: datetime | None = None,
) -> ReportContent:
    """Collect the report's facts; ``overlays`` maps a method name to its rendered overlay;
    ``warnings`` (routing, out-of-distribution, uncertainty) head the report and mark the
    label as not reliable."""
    if explanation.image is None:
        raise ValueError("the explanation carries no image; explain it from an image")
    created = created or datetime.now(UTC)
    order = np.argsort(-explanation.probabilities)
    names = explanation.class_names or [str(i) for i in range(len(order))]
    test_accuracy = card.metrics.get("accuracy")
    maps = [(f"{explanation.maps[name].label} ({explanation.maps[name].ms:.0f} ms)", png_bytes(img))
            for name, img in overlays.items()]
    return ReportContent(
        title=f"MedXAI report: {explanation.label} ({explanation.confidence:.1%})"
              + (" - NOT RELIABLE, see warnings" if warnings else ""),
        created=created.strftime("%Y-%m-%d %H:%M UTC"),
        summary=[
            ("Prediction", explanation.label),
            ("Confidence", f"{explanation.confidence:.1%}"),
            ("Maps explain class", explanation.target_label),
            *([("Modality chosen by", modality_source)] if modality_source else []),
            ("Shared forward + gradient pass", f"{explanation.pass_ms:.0f} ms"),
            *((f"Image {k.replace('_', ' ')}", str(image_meta[k])) for k in _SAFE_META
              if image_meta.get(k) not in (None, "")),
        ],
        probabilities=[(names[i], f"{explanation.probabilities[i]:.2%}") for i in order],
        model=[
            ("Model", card.name), ("Modality", card.modality), ("Architecture", card.arch),
            ("Classes", ", ".join(card.classes)),
            ("Training data", str(card.data.get("name", "unknown"))),
            ("Data licence", str(card.data.get("licence", "unknown"))),
            ("Test accuracy", f"{test_accuracy:.2%}" if isinstance(test_accuracy, float) else "n/a"),
            ("Headline figures", headline(card).sentence),
            ("Weights sha256", card.sha256), ("Code version", card.code_version),
        ],
        image_png=png_bytes(explanation.image),
        maps=maps,
        warnings=list(warnings),
    )


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _img(data: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode()}">')


def report_html(content: ReportContent) -> str:
    """A single self-contained HTML page (images inlined as base64)."""
    figures = "".join(f"<figure>{_img(png, label)}<figcaption>{html.escape(label)}</figcaption>"
                      "</figure>" for label, png in content.maps)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(content.title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left}} figure{{display:inline-block;margin:6px}}
img{{max-width:256px}} .warn{{background:#fff3cd;padding:8px;border:1px solid #e0c060}}</style></head>
<body><h1>{html.escape(content.title)}</h1>
<p class="warn">{html.escape(DISCLAIMER)}</p><p>Created {html.escape(content.created)}</p>
{"".join(f'<p class="warn"><strong>Warning:</strong> {html.escape(w)}</p>' for w in content.warnings)}
<h2>Image seen by the model</h2>{_img(content.image_png, "model input")}
<h2>Prediction</h2>{_table(content.summary)}
<h2>Class probabilities</h2>{_table(content.probabilities)}
<h2>Heat maps</h2>{figures}
<h2>Model</h2>{_table(content.model)}
</body></html>
"""


def report_pdf(content: ReportContent) -> bytes:
    """The same report as a PDF (fpdf2, core fonts: text is reduced to Latin-1)."""
    from fpdf import FPDF

    def text(value: str) -> str:
        return value.encode("latin-1", "replace").decode("latin-1")

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, text(content.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.set_fill_color(255, 243, 205)
    pdf.multi_cell(0, 5, text(DISCLAIMER), fill=True, new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 6, text(f"Created {content.created}"), new_x="LMARGIN", new_y="NEXT")
    for warning in content.warnings:
        pdf.set_font("Helvetica", "B", 9)
        pdf.multi_cell(0, 5, text(f"Warning: {warning}"), fill=True, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.image(io.BytesIO(content.image_png), w=60)
    for heading, rows in (("Prediction", content.summary),
                          ("Class probabilities", content.probabilities),
                          ("Model", content.model)):
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)
        for key, value in rows:
            pdf.multi_cell(0, 5, text(f"{key}: {value}"), new_x="LMARGIN", new_y="NEXT")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 8, "Heat maps", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 8)
    tile, gap = 58.0, 4.0
    for i, (label, png) in enumerate(content.maps):
        col = i % 3
        if col == 0 and i:
            pdf.ln(tile + 8)
        if pdf.get_y() + tile + 8 > pdf.h - 12:
            pdf.add_page()
        x, y = pdf.l_margin + col * (tile + gap), pdf.get_y()
        pdf.image(io.BytesIO(png), x=x, y=y, w=tile, h=tile)
        pdf.set_xy(x, y + tile + 1)
        pdf.cell(tile, 4, text(label))
        pdf.set_xy(pdf.l_margin, y)
    return bytes(pdf.output())
