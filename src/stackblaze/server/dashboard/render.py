"""HTML building blocks for the pages: every value goes through `e` (html.escape); markup is only ever
joined from escaped text, so a service name, a log line or an exit message cannot become markup."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from urllib.parse import urlencode

from stackblaze.server.dashboard.assets import VERSION


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def target(path: str, **query: object) -> str:
    """A path with its query (not escaped: for button(), which escapes it)."""
    pairs = {k: str(v) for k, v in query.items() if v is not None}
    return path + (f"?{urlencode(pairs)}" if pairs else "")


def url(path: str, **query: object) -> str:
    """A path with its query, escaped for an attribute."""
    return e(target(path, **query))


def link(href: str, text: object) -> str:
    return f'<a href="{href}">{e(text)}</a>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "none", cls: str = "") -> str:
    """`rows` hold HTML already escaped (e(), link(), button())."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{e(empty)}</td></tr>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def button(text: str, api: str, *, confirm: str | None = None, inputs: str | None = None,
           body: str | None = None, cls: str = "") -> str:
    """A button that calls the API (assets.JS): `api` is "METHOD /v1/path?query"; `inputs` is
    "element-id:field,..." read into the JSON body; `confirm` asks first ({value} is the first input)."""
    attrs = [f'data-api="{e(api)}"']
    if confirm:
        attrs.append(f'data-confirm="{e(confirm)}"')
    if inputs:
        attrs.append(f'data-inputs="{e(inputs)}"')
    if body:
        attrs.append(f'data-body="{e(body)}"')
    return f'<button type="button" class="{e(cls)}" {" ".join(attrs)}>{e(text)}</button>'


def page(title: str, body: str, *, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    trail = " / ".join(link(href, text) if href else e(text) for text, href in crumbs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{e(title)} · stackblaze</title>
<link rel="stylesheet" href="/static/dashboard-{VERSION}.css"></head>
<body><header><a class="brand" href="/">stackblaze</a> <nav>{link("/", "Services")}
{link("/settings/drains", "Settings → Log Drains")}</nav><span id="status" role="status"></span></header>
<main><p class="crumbs">{trail}</p>{body}</main>
<script src="/static/dashboard-{VERSION}.js" defer></script></body></html>"""


def part(name: str, inner: str, *, every: float = 2.0) -> str:
    """A section the page refreshes in place (GET the same URL with ?part=name) every `every` seconds."""
    return f'<div data-part="{e(name)}" data-every="{every:g}">{inner}</div>'


def size(value: object) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def percent(value: object) -> str:
    return f"{value:.1f}%" if isinstance(value, int | float) else "n/a"


def clock(at: object) -> str:
    """A Unix time as the local HH:MM:SS (the day too when it is not today)."""
    if not isinstance(at, int | float):
        return ""
    day = time.strftime("%Y-%m-%d ", time.localtime(at))
    return ("" if day == time.strftime("%Y-%m-%d ") else day) + time.strftime("%H:%M:%S", time.localtime(at))


def duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return ""
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"
