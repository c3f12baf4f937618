"""Memory and CPU over a window as SVG drawn on the server (no chart library), with the service's starts,
exits and scheduled restarts as vertical marks on the same time axis: a leak that ends in a kill shows as
a rising line cut by a red mark."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stackblaze.server.dashboard.render import clock, e

WIDTH, HEIGHT = 720, 170
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 18, 22
MARK_CLASS = {"exit": "exit", "start": "start", "restart-scheduled": "restart", "start-failed": "exit"}


def nice_top(value: float) -> float:
    """A round number at or above `value`: 1, 2, 5 × 10^k (an axis that reads at a glance)."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    for step in (1, 2, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale


def line_chart(*, title: str, since: float, until: float, series: Sequence[tuple[int, list[float], list[Any]]],
               marks: Sequence[dict[str, Any]], label: Callable[[float], str], floor_top: float) -> str:
    """`series`: (replica, times, values) with None for an unknown value (a gap in the line)."""
    span = max(until - since, 1e-9)
    values = [v for _, _, vs in series for v in vs if isinstance(v, int | float)]
    top = nice_top(max([floor_top, *values]))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: float) -> float:
        return LEFT + plot_w * min(max((at - since) / span, 0.0), 1.0)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [f'<text x="{LEFT}" y="12" class="title">{e(title)}</text>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" class="axis"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}" class="grid"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 4}" class="ylabel">{e(label(top))}</text>',
             f'<text x="{LEFT - 4}" y="{TOP + plot_h}" class="ylabel">{e(label(0))}</text>',
             f'<text x="{LEFT}" y="{HEIGHT - 4}" class="xlabel">{e(clock(since))}</text>',
             f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" class="xlabel end">{e(clock(until))}</text>']
    for mark in marks:
        kind = MARK_CLASS.get(str(mark.get("kind")), "restart")
        at = x(float(mark["at"]))
        who = f"replica {mark['replica']}: " if mark.get("replica") is not None else ""
        parts.append(f'<line x1="{at:.1f}" y1="{TOP}" x2="{at:.1f}" y2="{TOP + plot_h}" class="mark {kind}">'
                     f'<title>{e(clock(mark["at"]))} {e(who)}{e(mark.get("message"))}</title></line>')
    for replica, times, vals in series:
        runs: list[list[str]] = [[]]
        for at, value in zip(times, vals, strict=False):
            if isinstance(value, int | float):
                runs[-1].append(f"{x(at):.1f},{y(value):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if run:
                parts.append(f'<polyline class="series r{replica % 6}" points="{" ".join(run)}">'
                             f'<title>replica {replica}</title></polyline>')
    if not values:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" class="empty">no samples yet</text>')
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{e(title)}" '
            f'data-top="{top:g}" data-peak="{max(values, default=0):g}" data-samples="{len(values)}">'
            + "".join(parts) + "</svg>")


def usage_charts(answer: dict[str, Any], size: Callable[[object], str]) -> str:
    """Both charts of a usage answer (server/usage_api.py's UsageAnswer as a dict)."""
    if not answer["available"]:
        return f'<p class="muted">{e(answer.get("note") or "n/a")}</p>'
    memory = [(s["replica"], s["at"], s["memory"]) for s in answer["replicas"]]
    cpu = [(s["replica"], s["at"], s["cpu"]) for s in answer["replicas"]]
    window = {"since": answer["since"], "until": answer["until"], "marks": answer["events"]}
    legend = " ".join(f'<span class="key r{s["replica"] % 6}">replica {s["replica"]}</span>'
                      for s in answer["replicas"])
    return (line_chart(title="Memory", series=memory, label=size, floor_top=64 << 20, **window)
            + line_chart(title="CPU (% of one core)", series=cpu, label=lambda v: f"{v:g}%", floor_top=10, **window)
            + f'<p class="legend">{legend} <span class="key exit">exit</span> <span class="key start">start'
              f'</span> <span class="key restart">restart scheduled</span></p>')
