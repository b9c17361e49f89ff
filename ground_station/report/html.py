"""report.html: one self-contained file (inline CSS, SVG figures, photos and font as data URIs)."""

from __future__ import annotations

import base64
from html import escape

from ground_station.report import drawing, model, texts
from ground_station.report.charset import FONT_PATH
from ground_station.report.model import ReportData

_CSS = """
@font-face { font-family: "ReportCJK"; src: url(data:font/otf;base64,%(font)s) format("opentype"); }
body { font-family: "ReportCJK", "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       color: #263238; margin: 24px auto; max-width: 1100px; padding: 0 16px; font-size: 14px; }
h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 17px; margin-top: 28px;
     border-bottom: 2px solid #37474f; padding-bottom: 3px; }
.en { color: #607d8b; font-size: 0.9em; }
table { border-collapse: collapse; width: 100%%; margin: 8px 0; }
th, td { border: 1px solid #90a4ae; padding: 4px 6px; vertical-align: top; text-align: left; }
th { background: #eceff1; font-weight: 600; }
table.info td:first-child { width: 28%%; background: #fafafa; }
td.num { text-align: right; white-space: nowrap; }
td.photo { width: 170px; } td.photo img { width: 160px; height: auto; display: block; }
tr.not-counted td { color: #90a4ae; }
.grade { display: inline-block; min-width: 1.6em; text-align: center; border-radius: 3px;
         font-weight: 600; border: 1px solid #263238; }
.banner { border: 2px solid #c62828; background: #ffebee; padding: 10px 14px; margin: 14px 0;
          font-weight: 600; }
.banner.running { border-color: #f9a825; background: #fffde7; }
.notice { border-left: 4px solid #f9a825; background: #fffde7; padding: 6px 12px; }
ul.unverified { columns: 2; font-family: monospace; font-size: 12px; }
footer { margin-top: 32px; color: #78909c; font-size: 12px; }
"""


def _bi(pair: tuple[str, str]) -> str:
    if pair[0] == pair[1]:
        return escape(pair[0])
    return f'{escape(pair[0])} <span class="en">{escape(pair[1])}</span>'


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def render(data: ReportData) -> str:
    """The whole report as HTML text."""
    m = data.mission
    asset_id = data.asset_id
    font = base64.b64encode(FONT_PATH.read_bytes()).decode("ascii")
    out = [
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(data.title[0])} {escape(asset_id)}</title>",
        f"<style>{_CSS % {'font': font}}</style></head><body>",
        f"<header><h1>{_bi(data.title)}</h1><p><b>{escape(asset_id)}</b> "
        f"{escape(m.name)}</p></header>",
    ]
    banner = model.banner_lines(data)
    if banner:
        cls = "banner" if m.state in ("interrupted", "aborted") else "banner running"
        out.append(f'<div class="{cls}" id="state-banner">'
                   + "<br>".join(escape(line) for line in banner) + "</div>")
    out.append('<section id="info"><table class="info">')
    for label, value in model.info_lines(data):
        out.append(f"<tr><td>{_bi(label)}</td><td>{escape(value)}</td></tr>")
    out.append("</table></section>")
    out += _findings(data)
    out += _segment(data)
    out += _maps(data)
    out += _unverified(data)
    out += _equivalents(data)
    out += _photos(data)
    if data.notes:
        out.append(f'<section id="notes"><h2>{_bi(texts.NOTES)}</h2><ul>')
        out += [f"<li>{escape(n)}</li>" for n in data.notes]
        out.append("</ul></section>")
    out.append(f"<footer>{escape(str(data.folder))} &middot; "
               f"{data.generated_utc:%Y-%m-%d %H:%M:%S} UTC</footer></body></html>\n")
    return "\n".join(out)


def _findings(data: ReportData) -> list[str]:
    out = [f'<section id="segment-table"><h2>{_bi(data.findings_title)}</h2>']
    if not data.rows:
        out.append(f"<p>{_bi(texts.NO_FINDINGS)}</p>")
    out.append('<table class="findings"><thead><tr>'
               + "".join(f"<th>{_bi(c)}</th>" for c in texts.COLUMNS) + "</tr></thead><tbody>")
    for row in data.rows:
        f = row.finding
        cells = model.finding_cells(row)
        colour = drawing.grade_colour(f.grade)
        if row.photo_jpeg is not None:
            photo = (f'<img alt="{escape(f.id)}" src="{_data_uri("image/jpeg", row.photo_jpeg)}">'
                     f"{escape(f.photo or '')}")
        else:
            photo = _bi(texts.NO_PHOTO)
        grade = f'<span class="grade" style="background:{colour}">{escape(cells[5])}</span>'
        cls = "" if f.counted else ' class="not-counted"'
        out.append(
            f'<tr id="{escape(f.id)}"{cls}><td class="num">{cells[0]}<br><small>'
            f"{escape(f.id)}</small></td>"
            f'<td class="num">{escape(cells[1])}</td><td class="num">{escape(cells[2])}</td>'
            f"<td><b>{escape(cells[3])}</b></td><td>{escape(row.name_zh)}<br>"
            f'<span class="en">{escape(row.name_en)}</span></td>'
            f'<td class="num">{grade}</td><td class="num">{escape(cells[6])}</td>'
            f'<td class="num">{escape(cells[7])}</td><td class="photo">{photo}</td>'
            f"<td>{escape(cells[9])}</td></tr>")
    out.append("</tbody></table>")
    return out


def _segment(data: ReportData) -> list[str]:
    s = data.segment
    if s is None:
        return ["</section>"]
    out = ['<table class="segment" id="evaluation">']
    for i, (label, structural, functional) in enumerate(model.segment_lines(s)):
        tag = "th" if i == 0 else "td"
        out.append(f"<tr><{tag}>{escape(label)}</{tag}><{tag}>{escape(structural)}</{tag}>"
                   f"<{tag}>{escape(functional)}</{tag}></tr>")
    out.append("</table>")
    if s.not_scored:
        out.append(f"<p>{_bi(texts.NOT_SCORED)}: {escape(', '.join(s.not_scored))}</p>")
    if s.computed:
        out.append(f'<p class="notice">{_bi(texts.COMPUTED)}</p>')
    out += [f'<p class="notice">{escape(n)}</p>' for n in s.notes[1:]]
    out.append(f'<p class="notice">{escape(model.unverified_summary(s))} '
               '&rarr; <a href="#unverified">list</a></p></section>')
    return out


def _maps(data: ReportData) -> list[str]:
    out = [f'<section id="map"><h2>{_bi(texts.MAP)}</h2><p>{_bi(data.map_note)}</p>',
           drawing.to_svg(data.defect_map, texts.MAP[1]),
           f"<h3>{_bi(texts.TRAJECTORY)}</h3>"]
    if data.trajectory_map is None:
        out.append(f"<p>{_bi(texts.NO_TRAJECTORY)}</p>")
    else:
        out.append(drawing.to_svg(data.trajectory_map, texts.TRAJECTORY[1]))
    out.append("</section>")
    return out


def _unverified(data: ReportData) -> list[str]:
    s = data.segment
    listed = list(s.unverified) if s else []
    for row in data.rows:
        listed += [u for u in row.finding.unverified if u not in listed]
    if not listed:
        return []
    out = [f'<section id="unverified"><h2>{_bi(texts.UNVERIFIED)}</h2>',
           f'<p class="notice">{_bi(texts.UNVERIFIED_NOTICE)}</p><ul class="unverified">']
    for item in listed:
        mark = f' <b>({escape(texts.GUESSED[0])} {texts.GUESSED[1]})</b>' \
            if item.endswith("[G]") else ""
        out.append(f"<li>{escape(item)}{mark}</li>")
    out.append("</ul></section>")
    return out


def _equivalents(data: ReportData) -> list[str]:
    if not data.equivalents:
        return []
    out = [f'<section id="equivalents"><h2>{_bi(texts.EQUIVALENTS)}</h2>',
           f"<p>{_bi(texts.EQUIVALENTS_NOTE)}</p><table><tr>"
           + "".join(f"<th>{_bi(c)}</th>" for c in texts.EQUIVALENT_COLUMNS) + "</tr>"]
    for e in data.equivalents:
        out.append(f"<tr><td><b>{escape(e.code)}</b></td><td>{escape(e.name_zh)} "
                   f'<span class="en">{escape(e.name_en)}</span></td>'
                   f"<td>{escape(', '.join(e.pacp) or '-')}</td>"
                   f"<td>{escape(', '.join(e.en13508) or '-')}</td><td>{escape(e.note)}</td></tr>")
    out.append("</table></section>")
    return out


def _photos(data: ReportData) -> list[str]:
    photos = data.db.photos
    if not photos:
        return []
    out = [f'<section id="photos"><h2>{_bi(texts.PHOTOS)}</h2><table>'
           "<tr><th>path</th><th>distance (m)</th><th>kind</th></tr>"]
    for p in photos:
        distance = "-" if p.distance_m is None else f"{p.distance_m:.2f}"
        out.append(f"<tr><td>{escape(p.path)}</td><td class=\"num\">{distance}</td>"
                   f"<td>{escape(p.kind or '-')}</td></tr>")
    out.append("</table></section>")
    return out
