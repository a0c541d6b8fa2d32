"""A run's task runs drawn as SVG on the server: a timeline (when each ran, for how long, and
arrows from the runs it waited on) and a dependency graph (layers by longest upstream path),
both from the recorded lineage (``task_inputs``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from markupsafe import Markup, escape

from .render import as_utc

ROW = 22
LABEL_W = 190
WIDTH = 960
TIMELINE_ROWS = 300  # rows drawn; the task list below the drawing has them all


def upstream_ids(task: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for refs in (task.get("task_inputs") or {}).values():
        for ref in refs or ():
            if isinstance(ref, dict) and ref.get("input_type") == "task_run" and ref.get("id"):
                out.append(str(ref["id"]))
    return out


def _offset(seconds: float, span: float) -> str:
    if span < 2:
        return f"{seconds * 1000:.0f} ms"
    if span < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _cls(task: dict[str, Any]) -> str:
    return f"s-{(task.get('state_type') or 'unknown').lower()}"


def timeline(tasks: list[dict[str, Any]], run: dict[str, Any]) -> Markup:
    drawn = [t for t in tasks if t.get("start_time") or t.get("created")][:TIMELINE_ROWS]
    if not drawn:
        return Markup('<p class="muted">No task runs.</p>')
    now = dt.datetime.now(dt.timezone.utc)
    starts = [as_utc(t.get("start_time") or t["created"]) for t in drawn]
    ends = [as_utc(t["end_time"]) if t.get("end_time") else now for t in drawn]
    t0 = min([*starts, *([as_utc(run["start_time"])] if run.get("start_time") else [])])
    t1 = max([*ends, *([as_utc(run["end_time"])] if run.get("end_time") else [])])
    span = max((t1 - t0).total_seconds(), 0.001)
    plot = WIDTH - LABEL_W - 20

    def x(at: dt.datetime) -> float:
        return LABEL_W + (at - t0).total_seconds() / span * plot

    height = ROW * len(drawn) + 30
    parts = [f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" '
             f'role="img" aria-label="task runs over time">']
    for i in range(5):  # time axis
        at = t0 + dt.timedelta(seconds=span * i / 4)
        gx = LABEL_W + plot * i / 4
        parts.append(f'<line class="grid" x1="{gx:.1f}" y1="0" x2="{gx:.1f}" y2="{height - 18}"/>'
                     f'<text class="axis" x="{gx:.1f}" y="{height - 4}" text-anchor="middle">'
                     f'+{_offset((at - t0).total_seconds(), span)}</text>')
    row_of = {t["id"]: i for i, t in enumerate(drawn)}
    for i, (t, s, e) in enumerate(zip(drawn, starts, ends, strict=True)):
        y = i * ROW + 4
        x0, x1 = x(s), max(x(e), x(s) + 3)
        secs = (e - s).total_seconds()
        parts.append(
            f'<g class="bar {_cls(t)}" data-task="{escape(t["id"])}"><title>{escape(t["name"])}: '
            f'{escape(t.get("state_name") or "")}, {secs:.3f} s</title>'
            f'<text class="label" x="{LABEL_W - 8}" y="{y + 13}" text-anchor="end">'
            f'{escape(t["name"][:28])}</text>'
            f'<rect x="{x0:.1f}" y="{y}" width="{x1 - x0:.1f}" height="{ROW - 8}" rx="3"/></g>')
    for i, (t, s) in enumerate(zip(drawn, starts, strict=True)):
        for up in upstream_ids(t):
            j = row_of.get(up)
            if j is None:
                continue
            ux = max(x(ends[j]), x(starts[j]) + 3)
            uy, vy = j * ROW + 4 + (ROW - 8) / 2, i * ROW + 4 + (ROW - 8) / 2
            vx = x(s)
            parts.append(f'<path class="edge" d="M{ux:.1f},{uy:.1f} C{ux + 18:.1f},{uy:.1f} '
                         f'{vx - 18:.1f},{vy:.1f} {vx:.1f},{vy:.1f}" marker-end="url(#arrow)"/>')
    parts.append(_ARROW + "</svg>")
    return Markup("".join(parts))


_ARROW = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
          'markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
          'class="arrowhead"/></marker></defs>')


def layers(tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Each task run's layer: the length of its longest chain of upstream runs."""
    ids = {t["id"] for t in tasks}
    ups = {t["id"]: [u for u in upstream_ids(t) if u in ids] for t in tasks}
    layer: dict[str, int] = {}
    for t in tasks:  # created order: an upstream run is created before its downstream
        layer[t["id"]] = 1 + max((layer.get(u, 0) for u in ups[t["id"]]), default=-1)
    return layer


def dependency_graph(tasks: list[dict[str, Any]]) -> Markup:
    drawn = tasks[:TIMELINE_ROWS]
    if not drawn:
        return Markup('<p class="muted">No task runs.</p>')
    layer = layers(drawn)
    columns: dict[int, list[dict[str, Any]]] = {}
    for t in drawn:
        columns.setdefault(layer[t["id"]], []).append(t)
    node_w, node_h, gap_x, gap_y = 170, 30, 60, 14
    pos: dict[str, tuple[float, float]] = {}
    for col, members in columns.items():
        for row, t in enumerate(members):
            pos[t["id"]] = (10 + col * (node_w + gap_x), 10 + row * (node_h + gap_y))
    width = 20 + (max(columns) + 1) * (node_w + gap_x)
    height = 20 + max(len(m) for m in columns.values()) * (node_h + gap_y)
    parts = [f'<svg class="graph" viewBox="0 0 {width} {height}" width="{min(width, WIDTH)}" '
             f'role="img" aria-label="task run dependencies">']
    for t in drawn:
        vx, vy = pos[t["id"]]
        for up in upstream_ids(t):
            if up in pos:
                ux, uy = pos[up]
                parts.append(
                    f'<path class="edge" d="M{ux + node_w:.0f},{uy + node_h / 2:.0f} '
                    f'C{ux + node_w + 30:.0f},{uy + node_h / 2:.0f} {vx - 30:.0f},'
                    f'{vy + node_h / 2:.0f} {vx:.0f},{vy + node_h / 2:.0f}" '
                    f'marker-end="url(#arrow)"/>')
    for t in drawn:
        x, y = pos[t["id"]]
        parts.append(f'<g class="node {_cls(t)}"><title>{escape(t["name"])}: '
                     f'{escape(t.get("state_name") or "")}</title>'
                     f'<rect x="{x}" y="{y}" width="{node_w}" height="{node_h}" rx="6"/>'
                     f'<text x="{x + 10}" y="{y + 19}">{escape(t["name"][:22])}</text></g>')
    parts.append(_ARROW + "</svg>")
    return Markup("".join(parts))
