"""`stackblaze demo`: deploy the bundled example and show what the platform does with it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from stackblaze.cli import render
from stackblaze.cli.client import Client

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "demo"


def _wait(client: Client, what: str, check: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.request("GET", "/v1/ps", params={"service": "worker"})
        if check(status["services"][0]["replicas"]):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: gave up waiting for {what}")
        time.sleep(0.1)


def _show_logs(client: Client, seconds: float) -> None:
    printer = render.LogPrinter(as_json=False)
    deadline = time.monotonic() + seconds
    for record in client.stream("/v1/logs", params={"service": "worker", "n": 4, "follow": True}):
        printer.print(record)
        printer.flush()
        if time.monotonic() > deadline:
            break


def run_demo(client: Client, *, seconds: float) -> None:
    client.project = "demo"
    render.out.rule("1. deploy the bundled example (2 replicas of a worker, no broker)")
    result = client.deploy(str(EXAMPLE), on_progress=render.build_line)
    for item in result["services"]:
        render.out.print(f"{item['service']}: release {item['release']}, {item['replicas']} replicas")
    status = _wait(client, "2 running replicas", lambda rs: sum(r["state"] == "running" for r in rs) == 2)
    render.out.rule("2. stackblaze ps")
    render.ps_table(status)
    render.out.rule(f"3. stackblaze logs worker --tail  (for {seconds:g}s)")
    _show_logs(client, seconds)
    victim = status["services"][0]["replicas"][-1]
    render.out.rule(f"4. a crash: SIGKILL to worker.{victim['replica']} (pid {victim['pid']})")
    os.kill(victim["pid"], signal.SIGKILL)
    _wait(client, "the restart", lambda rs: any(
        r["replica"] == victim["replica"] and r["state"] == "running" and r["pid"] != victim["pid"] for r in rs))
    for event in client.request("GET", "/v1/events", params={"service": "worker", "limit": 4})["events"]:
        render.event_line(event, as_json=False)
    render.out.rule("5. stackblaze ps, after the restart")
    render.ps_table(client.request("GET", "/v1/ps"))
    render.out.print("The demo keeps running. Try:\n"
                     "  stackblaze logs worker --tail\n  stackblaze scale worker --replicas 4\n"
                     "  stackblaze events worker\n  stackblaze destroy --project demo --yes")
