"""report.pdf: the HTML report's content on A4 pages, with the shipped CJK font subset.

fpdf2 (pure Python) lays out text tables with real, searchable text, embeds only the glyphs
used (a few KB of font per report) and draws the figures from the same shapes as the SVGs.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from ground_station.report import drawing, model, texts
from ground_station.report.charset import FONT_PATH, MISSING_GLYPH, font_characters
from ground_station.report.model import ReportData

FONT = "ReportCJK"
_MARGIN_MM = 12.0
_HEADING_FILL = (236, 239, 241)


@functools.cache
def _covered() -> frozenset[str]:
    return frozenset(font_characters(FONT_PATH))


def safe(text: str) -> str:
    """``text`` with every character the shipped font lacks replaced by MISSING_GLYPH."""
    covered = _covered()
    return "".join(c if c in covered or c in "\n\t" else MISSING_GLYPH for c in text)


def _rgb(colour: str) -> tuple[int, int, int]:
    h = colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


class _ReportPdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FONT, size=7)
        self.set_text_color(120, 144, 156)
        self.cell(0, 5, safe(f"{self.footer_text}    {self.page_no()}/{{nb}}"), align="R")
        self.set_text_color(0, 0, 0)


def render(data: ReportData) -> bytes:
    """The whole report as PDF bytes."""
    pdf = _ReportPdf(orientation="P", unit="mm", format="A4")
    pdf.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
    pdf.set_auto_page_break(True, margin=14)
    pdf.add_font(FONT, "", str(FONT_PATH))
    asset_id, title = data.asset_id, data.title
    pdf.set_title(safe(f"{title[1]} {asset_id}"))
    pdf.set_creator("crawler ground_station.report")
    pdf.footer_text = f"{asset_id} · {title[0]} · {data.generated_utc:%Y-%m-%d %H:%M} UTC"
    pdf.add_page()

    pdf.set_font(FONT, size=16)
    _para(pdf, 8, f"{title[0]}  {title[1]}")
    pdf.set_font(FONT, size=10)
    _para(pdf, 6, f"{asset_id}   {data.mission.name}")
    pdf.ln(2)
    _banner(pdf, data)
    _key_values(pdf, model.info_lines(data))
    _findings(pdf, data)
    _segment(pdf, data)
    _maps(pdf, data)
    _unverified(pdf, data)
    _equivalents(pdf, data)
    if data.notes:
        _heading(pdf, texts.NOTES)
        pdf.set_font(FONT, size=8)
        for note in data.notes:
            _para(pdf, 4.5, f"- {note}")
    return bytes(pdf.output())


def _para(pdf: FPDF, height: float, text: str, **kwargs: Any) -> None:
    """A paragraph across the page, then back to the left margin."""
    pdf.multi_cell(0, height, safe(text), new_x="LMARGIN", new_y="NEXT", **kwargs)


def _heading(pdf: FPDF, pair: tuple[str, str]) -> None:
    if pdf.will_page_break(24):
        pdf.add_page()
    pdf.ln(3)
    pdf.set_font(FONT, size=12)
    _para(pdf, 7, f"{pair[0]}  {pair[1]}", border="B")
    pdf.ln(2)
    pdf.set_font(FONT, size=8)


def _banner(pdf: FPDF, data: ReportData) -> None:
    lines = model.banner_lines(data)
    if not lines:
        return
    red = data.mission.state in ("interrupted", "aborted")
    pdf.set_fill_color(*((255, 235, 238) if red else (255, 253, 231)))
    pdf.set_draw_color(*((198, 40, 40) if red else (249, 168, 37)))
    pdf.set_line_width(0.6)
    pdf.set_font(FONT, size=10)
    _para(pdf, 5.5, "\n".join(lines), border=1, fill=True, padding=2)
    pdf.set_line_width(0.2)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_fill_color(255, 255, 255)
    pdf.ln(3)


def _key_values(pdf: FPDF, lines: Sequence[tuple[tuple[str, str], str]]) -> None:
    pdf.set_font(FONT, size=8)
    with pdf.table(col_widths=(36, 57, 36, 57), first_row_as_headings=False,
                   line_height=4.0, padding=1, text_align="LEFT") as table:
        for i in range(0, len(lines), 2):
            row = table.row()
            for (zh, en), value in lines[i:i + 2]:
                row.cell(safe(f"{zh}\n{en}"), style=FontFace(fill_color=_HEADING_FILL))
                row.cell(safe(value))
            if len(lines[i:i + 2]) == 1:
                row.cell("", colspan=2)


def _findings(pdf: FPDF, data: ReportData) -> None:
    _heading(pdf, data.findings_title)
    if not data.rows:
        _para(pdf, 5, f"{texts.NO_FINDINGS[0]}  {texts.NO_FINDINGS[1]}")
        return
    pdf.set_font(FONT, size=7)
    widths = (10, 19, 10, 10, 20, 10, 10, 12, 40, 45)
    with pdf.table(col_widths=widths, line_height=3.6, padding=1,
                   headings_style=FontFace(fill_color=_HEADING_FILL),
                   text_align=("RIGHT", "RIGHT", "RIGHT", "CENTER", "LEFT", "CENTER", "RIGHT",
                               "RIGHT", "LEFT", "LEFT")) as table:
        heading = table.row()
        for zh, en in texts.COLUMNS:
            heading.cell(safe(f"{zh}\n{en}"))
        for r in data.rows:
            f = r.finding
            cells = model.finding_cells(r)
            cells[0] = f"{r.no}\n{f.id}"
            cells[4] = f"{r.name_zh}\n{r.name_en}"
            grey = None if f.counted else (144, 164, 174)
            row = table.row()
            for i, text in enumerate(cells):
                if i == 8 and r.photo_jpeg is not None:
                    row.cell(img=io.BytesIO(r.photo_jpeg), img_fill_width=True)
                elif i == 8:
                    row.cell(safe(f"{texts.NO_PHOTO[0]}\n{texts.NO_PHOTO[1]}"))
                elif i == 5:
                    fill = _rgb(drawing.grade_colour(f.grade))
                    row.cell(safe(text), style=FontFace(fill_color=fill))
                else:
                    row.cell(safe(text), style=FontFace(color=grey) if grey else None)


def _segment(pdf: FPDF, data: ReportData) -> None:
    s = data.segment
    if s is None:
        return
    pdf.ln(3)
    pdf.set_font(FONT, size=8)
    with pdf.table(col_widths=(40, 73, 73), line_height=4.5, padding=1, text_align="LEFT",
                   headings_style=FontFace(fill_color=_HEADING_FILL)) as table:
        for label, structural, functional in model.segment_lines(s):
            row = table.row()
            for text in (label, structural, functional):
                row.cell(safe(text))
    pdf.ln(1)
    notices = []
    if s.not_scored:
        notices.append(f"{texts.NOT_SCORED[0]} {texts.NOT_SCORED[1]}: {', '.join(s.not_scored)}")
    if s.computed:
        notices += [f"{texts.COMPUTED[0]} {texts.COMPUTED[1]}", *s.notes[1:]]
    notices.append(model.unverified_summary(s))
    pdf.set_fill_color(255, 253, 231)
    for notice in notices:
        _para(pdf, 4.5, notice, fill=True)
    pdf.set_fill_color(255, 255, 255)


def _draw(pdf: FPDF, d: drawing.Drawing) -> None:
    width = pdf.w - 2 * _MARGIN_MM
    k = width / d.width
    height = d.height * k
    if pdf.will_page_break(height + 2):
        pdf.add_page()
    x0, y0 = pdf.l_margin, pdf.get_y()
    for s in d.shapes:
        if isinstance(s, drawing.Line):
            pdf.set_draw_color(*_rgb(s.colour))
            pdf.set_line_width(s.width * k)
            pdf.line(x0 + s.x1 * k, y0 + s.y1 * k, x0 + s.x2 * k, y0 + s.y2 * k)
        elif isinstance(s, drawing.Rect):
            style = ("F" if s.fill else "") + ("D" if s.stroke else "")
            if s.fill:
                pdf.set_fill_color(*_rgb(s.fill))
            if s.stroke:
                pdf.set_draw_color(*_rgb(s.stroke))
            pdf.set_line_width(0.6 * k)
            with pdf.local_context(fill_opacity=s.opacity):
                pdf.rect(x0 + s.x * k, y0 + s.y * k, s.w * k, s.h * k, style=style or "D")
        elif isinstance(s, drawing.Circle):
            pdf.set_fill_color(*_rgb(s.fill))
            pdf.set_draw_color(*_rgb(s.stroke))
            pdf.set_line_width(0.6 * k)
            pdf.circle(x0 + s.cx * k, y0 + s.cy * k, s.r * k, style="DF")
        elif isinstance(s, drawing.Text):
            pdf.set_font(FONT, size=s.size * k * 72 / 25.4)
            pdf.set_text_color(*_rgb(s.colour))
            text = safe(s.text)
            w = pdf.get_string_width(text)
            shift = {"start": 0.0, "middle": w / 2, "end": w}[s.anchor]
            pdf.text(x0 + s.x * k - shift, y0 + s.y * k, text)
        else:
            pdf.set_draw_color(*_rgb(s.colour))
            pdf.set_line_width(s.width * k)
            pdf.polyline([(x0 + x * k, y0 + y * k) for x, y in s.points])
    pdf.set_text_color(0, 0, 0)
    pdf.set_draw_color(0, 0, 0)
    pdf.set_line_width(0.2)
    pdf.set_y(y0 + height + 2)


def _maps(pdf: FPDF, data: ReportData) -> None:
    _heading(pdf, texts.MAP)
    _para(pdf, 4.5, f"{data.map_note[0]} {data.map_note[1]}")
    pdf.ln(1)
    _draw(pdf, data.defect_map)
    _heading(pdf, texts.TRAJECTORY)
    if data.trajectory_map is None:
        _para(pdf, 5, f"{texts.NO_TRAJECTORY[0]}  {texts.NO_TRAJECTORY[1]}")
    else:
        _draw(pdf, data.trajectory_map)


def _unverified(pdf: FPDF, data: ReportData) -> None:
    listed = list(data.segment.unverified) if data.segment else []
    for row in data.rows:
        listed += [u for u in row.finding.unverified if u not in listed]
    if not listed:
        return
    _heading(pdf, texts.UNVERIFIED)
    pdf.set_fill_color(255, 253, 231)
    _para(pdf, 4.5, f"{texts.UNVERIFIED_NOTICE[0]}\n{texts.UNVERIFIED_NOTICE[1]}",
                   fill=True)
    pdf.set_fill_color(255, 255, 255)
    pdf.ln(1)
    pdf.set_font(FONT, size=7)
    for item in listed:
        mark = f"  ({texts.GUESSED[0]} {texts.GUESSED[1]})" if item.endswith("[G]") else ""
        _para(pdf, 3.6, f"- {item}{mark}")


def _equivalents(pdf: FPDF, data: ReportData) -> None:
    if not data.equivalents:
        return
    _heading(pdf, texts.EQUIVALENTS)
    _para(pdf, 4.5, f"{texts.EQUIVALENTS_NOTE[0]} {texts.EQUIVALENTS_NOTE[1]}")
    pdf.ln(1)
    with pdf.table(col_widths=(16, 34, 34, 30, 72), line_height=4.2, padding=1,
                   text_align="LEFT", headings_style=FontFace(fill_color=_HEADING_FILL)) as table:
        heading = table.row()
        for zh, en in texts.EQUIVALENT_COLUMNS:
            heading.cell(safe(zh if zh == en else f"{zh}\n{en}"))
        for e in data.equivalents:
            row = table.row()
            for text in (e.code, f"{e.name_zh} {e.name_en}", ", ".join(e.pacp) or "-",
                         ", ".join(e.en13508) or "-", e.note):
                row.cell(safe(text))
