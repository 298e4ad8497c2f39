"""The dashboard page: server-rendered HTML with inline SVG charts, no front-end build step.

``render(data)`` is pure (numbers in, HTML out). The page polls ``/status`` every few seconds
while a run goes on and updates the progress in place (a few lines of plain JavaScript);
everything else is drawn on the server, so the page reads the same with scripts off.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from etl.read.views import RunRow, StatusSnapshot
from etl.serve import svg


@dataclass(slots=True)
class DashboardData:
    snapshot: StatusSnapshot
    runs: Sequence[RunRow] = ()
    series: list[svg.Series] = field(default_factory=list)
    bands: list[svg.Band] = field(default_factory=list)
    anomalies: list[svg.Marker] = field(default_factory=list)
    top_users: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # parts that could not be drawn, and why


_CSS = """
body{font:14px system-ui,sans-serif;margin:24px auto;max-width:760px;color:#0f172a}
h1{font-size:20px}h2{font-size:15px;margin:28px 0 8px}
table{border-collapse:collapse;width:100%}td,th{padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}tr:nth-child(even){background:#f1f5f9}
.muted{color:#64748b}.bad{color:#b91c1c}svg{width:100%;height:auto}
"""

_JS = """
const fmt = n => n == null ? "–" : Number(n).toLocaleString("en");
async function poll() {
  try {
    const r = await fetch("status", {headers: {"Accept": "application/json"}});
    if (r.ok) {
      const s = await r.json(), e = s.events || {};
      document.getElementById("loaded").textContent = fmt(e.loaded);
      document.getElementById("expected").textContent = fmt(e.expected);
      document.getElementById("percent").textContent =
        e.percent == null ? "" : `(${e.percent.toFixed(1)} %)`;
      const fill = document.querySelector("[data-progress=fill]");
      document.getElementById("posted").textContent = e.posted ? `, ${fmt(e.posted)} posted` : "";
      const ingested = e.loaded - (e.posted || 0);
      if (fill && e.expected) fill.setAttribute("width", 720 * Math.min(1, ingested / e.expected));
      document.getElementById("run-state").textContent = s.run ? s.run.status : "no run yet";
      if (s.run && s.run.status === "running") { setTimeout(poll, 2000); return; }
    }
  } catch (err) { /* the next poll tries again */ }
  setTimeout(poll, 10000);
}
poll();
"""


def _runs_table(runs: Sequence[RunRow]) -> str:
    if not runs:
        return '<p class="muted">no runs yet</p>'
    rows = "".join(
        f"<tr data-run='{r.run_id}'><td>{r.run_id}</td><td>{escape(r.status)}</td>"
        f"<td>{r.started_at.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}</td>"
        f"<td>{r.duration_s:,.0f} s</td><td>{r.inserted:,}</td><td>{r.rate_limited:,}</td>"
        f"<td class='{'bad' if r.error else ''}'>{escape(r.error or '')}</td></tr>"
        for r in runs
    )
    return (
        "<table id='runs'><tr><th>run</th><th>status</th><th>started (UTC)</th>"
        "<th>took</th><th>inserted</th><th>429s</th><th>error</th></tr>" + rows + "</table>"
    )


def render_charts(data: DashboardData) -> str:
    """The charts' part of the page (volumes, notes, top users): it changes only when the
    data does, so the server keeps it per data version and ``render`` splices it in."""
    notes = "".join(f"<p class='muted' data-note>{escape(n)}</p>" for n in data.notes)
    volume = svg.line_chart(
        data.series, title="events per hour by type", bands=data.bands, markers=data.anomalies
    )
    top = (
        svg.bar_chart(data.top_users, title="top users by events")
        if data.top_users
        else '<p class="muted">no users yet</p>'
    )
    return f"""<h2>event volume</h2>
{volume}
{notes}
<h2>top users</h2>
{top}"""


def render(data: DashboardData, charts: str | None = None) -> str:
    """The page: the sync's state and runs from ``data``; ``charts`` (``render_charts``) kept
    from before, or drawn from ``data``."""
    s = data.snapshot
    expected = s.expected_total
    percent = f"({s.percent:.1f} %)" if s.percent is not None else ""
    run_state = s.run.status if s.run else "no run yet"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>etl · dashboard</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>etl · dashboard</h1>
<h2>sync</h2>
<p id="progress-text"><b id="loaded">{s.loaded:,}</b> of <span id="expected">{
        f"{expected:,}" if expected is not None else "–"
    }</span> events<span id="posted">{f", {s.posted:,} posted" if s.posted else ""}</span>
<span id="percent">{percent}</span> · run: <span id="run-state">{escape(run_state)}</span></p>
{svg.progress_bar(s.ingested, expected)}
{render_charts(data) if charts is None else charts}
<h2>last runs</h2>
{_runs_table(data.runs)}
<script>{_JS}</script>
</body></html>
"""
