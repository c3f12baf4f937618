"""`stackblaze demo`: deploy the bundled example and show what the platform does with it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stackblaze.cli.options import JsonOpt, client, examples
from stackblaze.errors import StackblazeError

if TYPE_CHECKING:
    from stackblaze.cli.client import Client

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "demo"
app = typer.Typer()
Replicas = list[dict[str, Any]]


@app.command(epilog=examples("stackblaze demo", "stackblaze demo --seconds 10",
                             "stackblaze destroy --project demo --yes"))
def demo(
    seconds: Annotated[float, typer.Option(help="How long to show live logs.")] = 4.0,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a bundled example and crash it on purpose.

    Two replicas of a worker that needs no broker: shows ps, live logs, a crash and its restart."""
    run_demo(client("demo"), seconds=seconds, as_json=as_json)


def _wait(client: Client, what: str, check: Callable[[Replicas], bool], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.request("GET", "/v1/ps", params={"service": "worker"})
        if check(status["services"][0]["replicas"]):
            return status
        if time.monotonic() > deadline:
            raise StackblazeError(f"demo: gave up after {timeout:g}s waiting for {what} "
                                  "(see: stackblaze events worker --project demo)")
        time.sleep(0.1)


def _show_logs(client: Client, seconds: float) -> None:
    from stackblaze.cli import render

    printer = render.LogPrinter(as_json=False)
    deadline = time.monotonic() + seconds
    for record in client.stream("/v1/logs", params={"service": "worker", "n": 4, "follow": True}):
        printer.print(record)
        printer.flush()
        if time.monotonic() > deadline:
            break


def _running_again(client: Client, say: Any) -> int:
    """The demo's worker running again if it was stopped or scaled to 0 since an earlier demo (a deploy keeps
    both); its replica count, kept as scaled otherwise."""
    service = client.request("GET", "/v1/ps", params={"service": "worker"})["services"][0]
    if not service.get("running_flag", True):
        if say is not None:
            say.print("worker was stopped (stackblaze stop): starting it")
        client.request("POST", "/v1/services/worker/start")
        service = client.request("GET", "/v1/ps", params={"service": "worker"})["services"][0]
    if not service["desired"]:
        if say is not None:
            say.print("worker was scaled to 0: scaling it to 2")
        client.request("POST", "/v1/services/worker/scale", body={"replicas": 2})
        return 2
    return int(service["desired"])


def run_demo(client: Client, *, seconds: float, as_json: bool = False) -> None:
    from stackblaze.cli import render

    say = render.out if not as_json else None
    if say is not None:
        say.rule("1. deploy the bundled example (2 replicas of a worker, no broker)")
    result = client.deploy(str(EXAMPLE), on_progress=(lambda _: None) if as_json else render.build_line)
    if say is not None:
        for item in result["services"]:
            say.print(f"{item['service']}: release {item['release']}, {item['replicas']} replicas")
    count = _running_again(client, say)
    status = _wait(client, f"{count} running replicas",
                   lambda rs: sum(r["state"] == "running" for r in rs) >= count)
    if say is not None:
        say.rule("2. stackblaze ps")
        render.ps_table(status)
        say.rule(f"3. stackblaze logs worker --tail  (for {seconds:g}s)")
        _show_logs(client, seconds)
    victim = next(r for r in reversed(status["services"][0]["replicas"]) if r["state"] == "running")
    if say is not None:
        say.rule(f"4. a crash: SIGKILL to worker.{victim['replica']} (pid {victim['pid']})")
    try:
        os.kill(victim["pid"], signal.SIGKILL)
    except ProcessLookupError:
        pass  # it exited on its own meanwhile: the restart below is there to see all the same
    except PermissionError:
        raise StackblazeError(f"demo: not allowed to signal worker.{victim['replica']} (pid {victim['pid']}); "
                              "run the demo as the user the daemon runs as") from None
    after = _wait(client, "the restart", lambda rs: any(
        r["replica"] == victim["replica"] and r["state"] == "running" and r["pid"] != victim["pid"] for r in rs))
    recent = client.request("GET", "/v1/events", params={"service": "worker", "limit": 4})["events"]
    if say is None:
        render.print_json({"project": "demo", "deploy": result, "killed": {"replica": victim["replica"],
                           "pid": victim["pid"]}, "events": recent, "ps": after})
        return
    for event in recent:
        render.event_line(event, as_json=False)
    say.rule("5. stackblaze ps, after the restart")
    render.ps_table(client.request("GET", "/v1/ps"))
    say.print("The demo keeps running. Try:\n"
              "  stackblaze logs worker --tail --project demo\n  stackblaze scale worker --replicas 4 --project demo\n"
              "  stackblaze events worker --project demo\n  stackblaze destroy --project demo --yes")
