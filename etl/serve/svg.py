"""Server-side SVG charts for the dashboard. Pure: numbers in, markup out; no front-end build.

Every element a person reads carries a ``data-*`` attribute naming what it shows (a series, a
band, an anomaly, a bar), so a browser test can check what is drawn, not only that something is.
All text is escaped; the charts scale to their container (``viewBox``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 720, 240
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 12, 28
PALETTE = ("#2563eb", "#db2777", "#16a34a", "#ea580c", "#7c3aed", "#0891b2", "#ca8a04", "#475569")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[tuple[dt.datetime, float]]


@dataclass(frozen=True, slots=True)
class Band:
    """A forecast: mean line with a lower/upper interval, drawn dashed over a shaded band."""

    name: str
    points: Sequence[tuple[dt.datetime, float, float, float]]  # (t, mean, lower, upper)


@dataclass(frozen=True, slots=True)
class Marker:
    """A point to flag (an anomaly) on the series ``series``."""

    series: str
    at: dt.datetime
    value: float
    label: str


@dataclass(slots=True)
class _Scale:
    t0: float
    t1: float
    v1: float
    w: float = field(default=WIDTH - PAD_L - PAD_R)
    h: float = field(default=HEIGHT - PAD_T - PAD_B)

    def x(self, t: dt.datetime) -> float:
        span = self.t1 - self.t0 or 1.0
        return PAD_L + (t.timestamp() - self.t0) / span * self.w

    def y(self, v: float) -> float:
        return PAD_T + self.h - (max(v, 0.0) / (self.v1 or 1.0)) * self.h


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(v))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _fmt(v: float) -> str:
    if v >= 1_000_000:
        return f"{v / 1_000_000:g}M"
    if v >= 1_000:
        return f"{v / 1_000:g}k"
    return f"{v:g}"


def _path(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    bands: Sequence[Band] = (),
    markers: Sequence[Marker] = (),
) -> str:
    """A time-series chart: one line per series, forecast bands, anomaly markers, a y axis."""
    times = [t for s in series for t, _ in s.points] + [p[0] for b in bands for p in b.points]
    values = [v for s in series for _, v in s.points] + [p[3] for b in bands for p in b.points]
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'data-chart="{escape(title)}"><title>{escape(title)}</title>'
    )
    if not times:
        return (
            head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
            'fill="#64748b" data-empty="1">no data in this range</text></svg>'
        )
    scale = _Scale(min(times).timestamp(), max(times).timestamp(), _nice_max(max(values)))
    out = [head, _axes(scale, min(times), max(times))]
    colour = {s.name: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    for band in bands:
        upper = [(scale.x(t), scale.y(hi)) for t, _, _, hi in band.points]
        lower = [(scale.x(t), scale.y(lo)) for t, _, lo, _ in reversed(band.points)]
        mean = [(scale.x(t), scale.y(m)) for t, m, _, _ in band.points]
        c = colour.get(band.name, PALETTE[0])
        out.append(
            f'<path d="{_path(upper + lower)} Z" fill="{c}" fill-opacity="0.15" stroke="none" '
            f'data-band="{escape(band.name)}"/>'
            f'<path d="{_path(mean)}" fill="none" stroke="{c}" stroke-dasharray="4 3" '
            f'data-forecast="{escape(band.name)}"/>'
        )
    for s in series:
        pts = [(scale.x(t), scale.y(v)) for t, v in s.points]
        out.append(
            f'<path d="{_path(pts)}" fill="none" stroke="{colour[s.name]}" stroke-width="1.5" '
            f'data-series="{escape(s.name)}" data-points="{len(pts)}"/>'
        )
    for m in markers:
        out.append(
            f'<circle cx="{scale.x(m.at):.1f}" cy="{scale.y(m.value):.1f}" r="4" fill="#dc2626" '
            f'data-anomaly="{escape(m.series)}"><title>{escape(m.label)}</title></circle>'
        )
    out.append(_legend(series, colour))
    out.append("</svg>")
    return "".join(out)


def _axes(scale: _Scale, first: dt.datetime, last: dt.datetime) -> str:
    parts = []
    for i in range(5):
        v = scale.v1 * i / 4
        y = scale.y(v)
        parts.append(
            f'<line x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#475569">{_fmt(v)}</text>'
        )
    for t, anchor in ((first, "start"), (last, "end")):
        label = t.strftime("%Y-%m-%d %H:%M")
        parts.append(
            f'<text x="{scale.x(t):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" font-size="11" '
            f'fill="#475569">{label}</text>'
        )
    return "".join(parts)


def _legend(series: Sequence[Series], colour: dict[str, str]) -> str:
    parts = []
    x = PAD_L + 8
    for s in series[:8]:
        parts.append(
            f'<rect x="{x}" y="{PAD_T + 2}" width="10" height="10" fill="{colour[s.name]}"/>'
            f'<text x="{x + 14}" y="{PAD_T + 11}" font-size="11">{escape(s.name)}</text>'
        )
        x += 24 + 7 * len(s.name)
    return "".join(parts)


def bar_chart(items: Sequence[tuple[str, float]], *, title: str) -> str:
    """Horizontal bars, largest first as given (a top list)."""
    row = 22
    height = max(1, len(items)) * row + 8
    top = max((v for _, v in items), default=0.0) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'data-chart="{escape(title)}"><title>{escape(title)}</title>'
    ]
    label_w = 300
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        w = (WIDTH - label_w - 80) * value / top
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12" '
            f'font-family="monospace">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="#2563eb" '
            f'data-bar="{escape(label)}" data-value="{value:g}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{_fmt(value)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def progress_bar(loaded: int, expected: int | None) -> str:
    """The sync's progress: loaded of expected (an unknown total draws an empty track)."""
    frac = min(1.0, loaded / expected) if expected else 0.0
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 720 24" role="img" '
        f'data-chart="progress" data-loaded="{loaded}" data-expected="{expected or ""}">'
        '<rect x="0" y="4" width="720" height="16" rx="4" fill="#e2e8f0"/>'
        f'<rect x="0" y="4" width="{720 * frac:.1f}" height="16" rx="4" fill="#16a34a" '
        'data-progress="fill"/></svg>'
    )
