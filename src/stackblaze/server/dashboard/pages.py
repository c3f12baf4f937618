"""The pages: projects and services, a service, Settings → Log Drains. Server-rendered from the same
functions the /v1 routes answer with (views.ps, usage_answer, drains_api.describe, control.env_list, so a
secret's value is masked here as it is there); the actions are /v1 calls made by assets.JS.

Each page has parts (`[data-part]`): GET the page with `?part=NAME` answers that section alone, which the
script swaps in every 2 s, so a restart or an exit shows without reloading.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from stackblaze.errors import NotFoundError
from stackblaze.server import drains_api, views
from stackblaze.server.control import Control
from stackblaze.server.dashboard import assets
from stackblaze.server.dashboard.chart import usage_charts
from stackblaze.server.dashboard.render import (
    button,
    clock,
    duration,
    e,
    link,
    page,
    part,
    percent,
    size,
    table,
    target,
    url,
)
from stackblaze.server.usage_api import usage_answer
from stackblaze.state.usage import UsageStore

Part = Annotated[str | None, Query(max_length=40, pattern=r"^[a-z]+$")]
HTML_HEADERS = {"cache-control": "no-store", "x-frame-options": "DENY",
                "content-security-policy": "default-src 'self'; frame-ancestors 'none'"}


def html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers=HTML_HEADERS)


def state_text(replica: dict[str, Any]) -> str:
    state = str(replica.get("state"))
    if state == "waiting" and replica.get("next_restart_at"):
        left = max(0.0, float(replica["next_restart_at"]) - time.time())
        why = f"{replica['waiting_reason']}, " if replica.get("waiting_reason") else ""
        return f'<span class="waiting">waiting ({e(why)}restart at {e(clock(replica["next_restart_at"]))}, ' \
               f'in {e(duration(left))})</span>'
    return f'<span class="{e(state)}">{e(state)}</span>'


def exit_text(last: dict[str, Any] | None, *, who: str = "") -> str:
    if not last:
        return '<span class="muted">none</span>'
    ran = f", ran {duration(last.get('ran_for'))}" if last.get("ran_for") is not None else ""
    return f'{e(who)}<span class="bad">{e(last.get("meaning"))}</span> <span class="muted">at ' \
           f'{e(clock(last.get("at")))}{e(ran)}</span>'


def services_part(control: Control) -> str:
    out = []
    projects = control.store.project_names()
    for name in projects:
        rows = []
        for svc in views.ps(control, [name], None)["services"]:
            replicas = svc["replicas"]
            row = control.store.service(name, svc["service"])
            kind = row.spec.get("type", "worker") if row else ""
            states = sorted({str(r.get("state")) for r in replicas})
            waiting = [r for r in replicas if r.get("state") == "waiting"]
            state = state_text(min(waiting, key=lambda r: r.get("next_restart_at") or 0)) if waiting else \
                e(", ".join(states) or ("stopped" if not svc["running_flag"] else "none"))
            exits = [r for r in replicas if r.get("last_exit")]
            last = max(exits, key=lambda r: r["last_exit"].get("at") or 0) if exits else None
            cpus = [r["cpu"] for r in replicas if isinstance(r.get("cpu"), int | float)]
            mems = [r["memory"] for r in replicas if isinstance(r.get("memory"), int | float)]
            rows.append([
                link(url(f"/services/{svc['service']}", project=name), svc["service"]), e(kind),
                e(svc["release"]), e(f"{svc['running']}/{svc['desired']}"),
                e(sum(int(r.get("restart_count") or 0) for r in replicas)),
                exit_text(last["last_exit"], who=f"{svc['service']}.{last['replica']}: ") if last else exit_text(None),
                state, e(percent(sum(cpus)) if cpus else "n/a"), e(size(sum(mems)) if mems else "n/a"),
            ])
        out.append(f"<h2>{e(name)}</h2>" + table(
            ["Service", "Type", "Release", "Available/desired", "Restarts", "Last exit", "State", "CPU", "MEM"],
            rows, empty="no services", cls="services"))
    return "".join(out) or '<p class="muted">Nothing deployed yet: <code>stackblaze deploy</code>.</p>'


def replicas_part(control: Control, name: str, service: str) -> str:
    found = views.ps(control, [name], service)["services"]
    replicas = found[0]["replicas"] if found else []
    rows = [[e(r.get("replica")), state_text(r), e(r.get("pid") or r.get("pod") or ""), e(r.get("release")),
             e(duration(r.get("uptime"))), e(r.get("restart_count", 0)), e(percent(r.get("cpu"))),
             e(size(r.get("memory"))), exit_text(r.get("last_exit"))] for r in replicas]
    tails = "".join(
        f'<details class="tail" open><summary>{e(service)}.{e(r["replica"])}: {exit_text(r["last_exit"])}'
        f'</summary><pre>{e(chr(10).join(r["last_exit"].get("last_lines") or []) or "(no output)")}</pre></details>'
        for r in replicas if r.get("last_exit"))
    summary = f'<p>{e(found[0]["running"])} of {e(found[0]["desired"])} running</p>' if found else ""
    return summary + table(["#", "State", "PID", "Release", "Up", "Restarts", "CPU", "MEM", "Last exit"], rows,
                           empty="no replicas", cls="replicas") + \
        (f"<h2>Crash tails</h2>{tails}" if tails else "")


def events_part(control: Control, name: str, service: str) -> str:
    found = control.store.events(project=name, service=service, limit=1_000_000)[-30:]
    rows = [[e(clock(ev.at)), e(ev.replica or ""), e(ev.kind), e(ev.message)] for ev in reversed(found)]
    return table(["When", "Replica", "Kind", "Message"], rows, empty="no events", cls="events")


def releases_part(control: Control, name: str, service: str) -> str:
    row = control.row(name, service)
    rows = []
    for rel in sorted(control.releases(name, service), key=lambda r: -r.number):
        info = rel.details
        if rel.number == row.release:
            action = "<strong>current</strong>"
        elif rel.built:
            back = target(f"/v1/services/{service}/rollback", project=name)
            action = button(f"Roll back to {rel.number}", f"POST {back}",
                            body=json.dumps({"release": rel.number}),
                            confirm=f"Roll {service} back to release {rel.number}?")
        else:
            action = f'<span class="bad">build failed: {e(str(info.get("error", ""))[:200])}</span>'
        rows.append([e(rel.number), e(clock(rel.created_at)), e(info.get("runtime", "")), action])
    return table(["Release", "Created", "Runtime", ""], rows, empty="no releases", cls="releases")


def env_part(control: Control, name: str, service: str) -> str:
    rows = [[e(v["key"]), e(v["value"]) + (' <span class="muted">(secret: never sent)</span>' if v["secret"] else ""),
             e(v["service"] or "project")]
            for v in control.env_list(name) if v["service"] in (None, service)]
    return table(["Key", "Value", "Scope"], rows, empty="no env vars", cls="env")


def service_page(control: Control, name: str, service: str, parts: dict[str, Callable[[], str]]) -> str:
    row = control.row(name, service)
    api = f"/v1/services/{service}"
    scale_input = f'<input id="replicas" type="number" min="0" max="1000" value="{e(row.replicas)}" ' \
                  'aria-label="replicas">'
    actions = [scale_input, button("Scale", f"POST {target(api + '/scale', project=name)}",
                                   inputs="replicas:replicas",
                                   confirm=f"Scale {service} to {{value}} replicas?"),
               button("Restart", f"POST {target(api + '/restart', project=name)}",
                      confirm=f"Restart every replica of {service}?")]
    if row.running:
        actions.append(button("Stop", f"POST {target(api + '/stop', project=name)}", confirm=f"Stop {service}?"))
    else:
        actions.append(button("Start", f"POST {target(api + '/start', project=name)}", confirm=f"Start {service}?"))
    options = "".join(f'<option value="{n}">{e(service)}.{n}</option>' for n in range(1, max(row.replicas, 1) + 1))
    levels = "".join(f'<option value="{lv}">{lv} and above</option>'
                     for lv in ("debug", "info", "warn", "error", "fatal"))
    stream = url("/v1/logs/stream", project=name, service=service)
    logs = f"""<div class="logs" data-stream="{stream}">
<div class="actions"><select name="level" aria-label="level"><option value="">every level</option>{levels}</select>
<input name="text" type="search" placeholder="filter text" aria-label="filter text">
<select name="replica" aria-label="replica"><option value="">every replica</option>{options}</select>
<button type="button" name="pause">Pause</button></div><div class="lines" aria-live="polite"></div></div>"""
    body = (f'<h1>{e(service)} <span class="muted">({e(row.spec.get("type", "worker"))}, release '
            f'{e(row.release)})</span></h1><div class="actions">{"".join(actions)}</div>'
            f'<h2>Replicas</h2>{part("replicas", parts["replicas"]())}'
            f'<h2>Memory and CPU, last hour</h2>{part("chart", parts["chart"](), every=5)}'
            f"<h2>Live logs</h2>{logs}"
            f'<h2>Events</h2>{part("events", parts["events"]())}'
            f'<h2>Releases</h2>{part("releases", parts["releases"]())}'
            f'<h2>Env vars</h2>{part("env", parts["env"](), every=10)}')
    return page(f"{service} · {name}", body, crumbs=[(name, "/"), (service, "")])


def router(control: Control) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    usage_table = UsageStore(control.store)

    @routes.get("/static/dashboard-{version}.{kind}")
    async def static(version: str, kind: str) -> Response:
        if kind not in ("js", "css"):
            raise NotFoundError(f"/static: no {kind!r} asset (there are dashboard-{assets.VERSION}.js and .css)")
        text, media = (assets.JS, "text/javascript") if kind == "js" else (assets.CSS, "text/css")
        # the version is in the URL: a browser may keep it for good
        return Response(text, media_type=media, headers={"cache-control": "max-age=31536000, immutable"})

    @routes.get("/")
    async def index(part_name: Annotated[Part, Query(alias="part")] = None) -> HTMLResponse:
        if part_name == "services":
            return html(services_part(control))
        return html(page("Services", f'<h1>Projects and services</h1>{part("services", services_part(control))}'))

    @routes.get("/services/{service}")
    async def service_view(service: str, project: str | None = None,
                           part_name: Annotated[Part, Query(alias="part")] = None) -> HTMLResponse:
        name = control.resolve(project)
        control.row(name, service)
        parts: dict[str, Callable[[], str]] = {
            "replicas": lambda: replicas_part(control, name, service),
            "events": lambda: events_part(control, name, service),
            "releases": lambda: releases_part(control, name, service),
            "env": lambda: env_part(control, name, service),
            "chart": lambda: usage_charts(
                usage_answer(control, usage_table, name, service).model_dump(), size),
        }
        if part_name is not None:
            if part_name not in parts:
                raise NotFoundError(f"part {part_name!r}: not a part of this page (one of {', '.join(parts)})")
            return html(parts[part_name]())
        return html(service_page(control, name, service, parts))

    @routes.get("/settings/drains")
    async def drains_view(request: Request,
                          part_name: Annotated[Part, Query(alias="part")] = None) -> HTMLResponse:
        found: drains_api.Drains = request.app.state.drains
        rows = []
        for row in found.table.all():
            d = await drains_api.describe(found, row)
            one = target(f"/v1/drains/{d['id']}", project=d["project"])
            rows.append([e(d["id"]), e(d["project"]), e(d["service"] or "every service"), e(d["url"]),
                         f'<span class="{"bad" if d["state"] == "failing" else ""}">{e(d["state"])}</span>',
                         e(d["sent"]), e(d["retried"]), e(d["dropped"]), e(d["last_error"] or ""),
                         button("Test", f"POST {target(one.split('?')[0] + '/test', project=d['project'])}")
                         + button("Remove", f"DELETE {one}", confirm=f"Remove drain {d['id']} ({d['url']})?")])
        listing = table(["ID", "Project", "Service", "URL", "State", "Sent", "Retried", "Dropped", "Last error", ""],
                        rows, empty="no drains", cls="drains")
        if part_name == "drains":
            return html(listing)
        projects = control.store.project_names()
        choices = "".join(f'<option value="{e(p)}">{e(p)}</option>' for p in projects)
        add = (f'<div class="actions"><select id="drain-project" aria-label="project">{choices}</select>'
               '<input id="drain-url" size="50" placeholder="syslog+tls://logs.example.com:6514 or https://..." '
               'aria-label="drain URL"><input id="drain-service" placeholder="service (blank: all)" '
               'aria-label="service">'
               + button("Add drain", "POST /v1/drains",
                        inputs="drain-project:?project,drain-url:url,drain-service:service",
                        confirm="Add the drain {value}?")
               + "</div>") if projects else '<p class="muted">Deploy a project first.</p>'
        body = f"<h1>Settings → Log Drains</h1>{add}<h2>Drains</h2>{part('drains', listing)}"
        return html(page("Log Drains", body, crumbs=[("Settings", ""), ("Log Drains", "")]))

    return routes
