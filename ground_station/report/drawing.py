"""The report's two figures as plain shapes, rendered to SVG (HTML) and to PDF alike.

``defect_map`` draws the pipe unrolled: distance along the pipe across (0 to L m), clock
position down (12 at the top and bottom, 6 in the middle: the invert); each finding is a dot
at its distance and clock (a bar when it is longer than 0.3 m, a full-height band when it has
no clock position, e.g. a deformation measured by the lidar), coloured by grade.
``trajectory_map`` draws the trajectory's top view in the site frame with the findings on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

import numpy as np
from numpy.typing import NDArray

from ground_station.report import texts
from ground_station.report.folder import Finding

GRADE_COLOURS = {1: "#43a047", 2: "#fdd835", 3: "#fb8c00", 4: "#e53935"}
UNGRADED_COLOUR = "#9e9e9e"
INK = "#263238"
GRID = "#b0bec5"
PIPE_FILL = "#eceff1"
_BAR_MIN_M = 0.3


def grade_colour(grade: int | None) -> str:
    """Fill colour of a finding of ``grade`` (grey when ungraded)."""
    return GRADE_COLOURS.get(grade, UNGRADED_COLOUR) if grade is not None else UNGRADED_COLOUR


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    colour: str = INK
    width: float = 1.0


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str | None
    stroke: str | None = INK
    opacity: float = 1.0


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str
    stroke: str = INK


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    text: str
    size: float = 10.0
    anchor: str = "start"  # start, middle, end
    colour: str = INK


@dataclass(frozen=True)
class Polyline:
    points: tuple[tuple[float, float], ...]
    colour: str = INK
    width: float = 1.5


Shape = Line | Rect | Circle | Text | Polyline


@dataclass
class Drawing:
    """Shapes in drawing units (1 unit = 1 CSS px in the HTML; scaled to the page in the PDF)."""

    width: float
    height: float
    shapes: list[Shape] = field(default_factory=list)

    def add(self, *shapes: Shape) -> None:
        self.shapes.extend(shapes)


def _nice_step(span: float, target_ticks: int = 8) -> float:
    raw = max(span, 1e-9) / target_ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if m * magnitude >= raw)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"


def _legend(d: Drawing, x: float, y: float) -> None:
    d.add(Text(x, y + 9, f"{texts.LEGEND_GRADE[0]} {texts.LEGEND_GRADE[1]}:", 10))
    x += 80
    for grade, colour in GRADE_COLOURS.items():
        d.add(Circle(x, y + 5, 5, colour), Text(x + 9, y + 9, f"{grade}", 10))
        x += 34
    d.add(Circle(x, y + 5, 5, UNGRADED_COLOUR),
          Text(x + 9, y + 9, f"{texts.UNGRADED[0]} {texts.UNGRADED[1]}", 10))


def defect_map(findings: Sequence[Finding], length_m: float, numbers: dict[str, int]) -> Drawing:
    """The unrolled pipe from 0 to ``length_m`` with a marker per finding (numbered)."""
    left, right, top, band = 46.0, 16.0, 16.0, 160.0
    width = 700.0
    d = Drawing(width, top + band + 62)
    span = max(length_m, max((f.end_m for f in findings), default=0.0), 1.0)
    plot_w = width - left - right

    def x_of(m: float) -> float:
        return left + plot_w * min(max(m, 0.0), span) / span

    def y_of(clock_h: float) -> float:
        return top + band * (clock_h % 12.0) / 12.0

    d.add(Rect(left, top, plot_w, band, PIPE_FILL, GRID))
    for clock, label in ((0.0, "12"), (3.0, "3"), (6.0, "6"), (9.0, "9"), (12.0, "12")):
        y = top + band * clock / 12.0
        d.add(Line(left, y, left + plot_w, y, GRID, 0.6), Text(left - 6, y + 4, label, 9, "end"))
    step = _nice_step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        x = x_of(tick)
        d.add(Line(x, top + band, x, top + band + 4, INK, 0.8),
              Text(x, top + band + 15, _fmt(tick), 9, "middle"))
        tick += step
    d.add(Text(left + plot_w, top + band + 28, "m", 9, "end"))
    if length_m > 0 and span > length_m:  # findings beyond the plan's length: mark the end
        d.add(Line(x_of(length_m), top, x_of(length_m), top + band, INK, 1.0))
    for f in findings:
        colour = grade_colour(f.grade if f.status == "confirmed" else None)
        x0, x1 = x_of(f.start_m), x_of(f.end_m)
        label = str(numbers.get(f.id, "?"))
        if f.clock_h is None:
            d.add(Rect(x0 - 2, top, max(x1 - x0, 0.0) + 4, band, colour, colour, 0.45))
            d.add(Text((x0 + x1) / 2, top - 4, label, 9, "middle"))
            continue
        y = y_of(f.clock_h)
        if f.length_m >= _BAR_MIN_M:
            d.add(Rect(x0, y - 5, max(x1 - x0, 4.0), 10, colour, INK))
        else:
            d.add(Circle(x0, y, 5, colour))
        d.add(Text((x0 + x1) / 2, y - 8, label, 9, "middle"))
    _legend(d, left, top + band + 36)
    return d


def trajectory_map(xyz: NDArray[np.float64] | None, findings: Sequence[Finding],
                   numbers: dict[str, int]) -> Drawing | None:
    """Top view (x right, y up) of the trajectory and the findings' site positions."""
    points = [] if xyz is None else [(float(p[0]), float(p[1])) for p in xyz]
    marks = [(f, f.xyz) for f in findings if f.xyz is not None]
    every = points + [(p[0], p[1]) for _, p in marks if p is not None]
    if not every:
        return None
    width, max_height, margin = 700.0, 300.0, 28.0
    xs, ys = np.array([p[0] for p in every]), np.array([p[1] for p in every])
    span_x = max(float(xs.max() - xs.min()), 1.0)
    span_y = max(float(ys.max() - ys.min()), 1.0)
    scale = min((width - 2 * margin) / span_x, (max_height - 2 * margin - 20) / span_y)
    height = max(140.0, span_y * scale + 2 * margin + 20)
    cx, cy = float(xs.min() + xs.max()) / 2, float(ys.min() + ys.max()) / 2

    def to_px(x: float, y: float) -> tuple[float, float]:
        return width / 2 + (x - cx) * scale, (height - 20) / 2 - (y - cy) * scale

    d = Drawing(width, height)
    d.add(Rect(0, 0, width, height, "#fafafa", GRID))
    if len(points) >= 2:
        stride = max(1, len(points) // 2000)
        path = [to_px(*p) for p in points[::stride]] + [to_px(*points[-1])]
        d.add(Polyline(tuple(path), "#1e88e5", 1.5))
    if points:
        sx, sy = to_px(*points[0])
        ex, ey = to_px(*points[-1])
        d.add(Circle(sx, sy, 4, "#ffffff", "#1e88e5"),
              Text(sx + 6, sy - 6, f"{texts.START[0]} {texts.START[1]}", 9),
              Rect(ex - 4, ey - 4, 8, 8, "#1e88e5", "#1e88e5"),
              Text(ex + 6, ey + 12, f"{texts.END[0]} {texts.END[1]}", 9))
    for f, p in marks:
        assert p is not None
        px, py = to_px(p[0], p[1])
        d.add(Circle(px, py, 4.5, grade_colour(f.grade if f.status == "confirmed" else None)),
              Text(px, py - 7, str(numbers.get(f.id, "?")), 9, "middle"))
    bar_m = _nice_step(span_x, 5)
    bx, by = margin, height - 12
    d.add(Line(bx, by, bx + bar_m * scale, by, INK, 1.5),
          Text(bx + bar_m * scale + 6, by + 4, f"{_fmt(bar_m)} m", 9))
    return d


def to_svg(d: Drawing, title: str) -> str:
    """The drawing as an inline ``<svg>`` element."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {d.width:.0f} '
             f'{d.height:.0f}" width="100%" style="max-width:{d.width:.0f}px" role="img" '
             f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for s in d.shapes:
        if isinstance(s, Line):
            parts.append(f'<line x1="{s.x1:.1f}" y1="{s.y1:.1f}" x2="{s.x2:.1f}" '
                         f'y2="{s.y2:.1f}" stroke="{s.colour}" stroke-width="{s.width}"/>')
        elif isinstance(s, Rect):
            fill = s.fill or "none"
            stroke = f' stroke="{s.stroke}"' if s.stroke else ""
            opacity = f' fill-opacity="{s.opacity}"' if s.opacity < 1.0 else ""
            parts.append(f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" '
                         f'height="{s.h:.1f}" fill="{fill}"{stroke}{opacity}/>')
        elif isinstance(s, Circle):
            parts.append(f'<circle cx="{s.cx:.1f}" cy="{s.cy:.1f}" r="{s.r}" fill="{s.fill}" '
                         f'stroke="{s.stroke}"/>')
        elif isinstance(s, Text):
            parts.append(f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size}" '
                         f'text-anchor="{s.anchor}" fill="{s.colour}">{escape(s.text)}</text>')
        else:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in s.points)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{s.colour}" '
                         f'stroke-width="{s.width}"/>')
    parts.append("</svg>")
    return "".join(parts)
