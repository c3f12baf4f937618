"""The same CLI, the same answers, on the local engine and on a Kubernetes target.

Each test runs twice: against the embedded local engine (real processes), and with `STACKBLAZE_TARGET=sim`,
a `kind: fake` target — the in-process fake cluster (engine/kubernetes/fake.py) behind the Kubernetes
engine, the real daemon and the real CLI. The fake stands in for the kubelet, which cannot run here: its
containers run no image, they do what the target's `behaviours` say (print these lines, exit with this code
after this long), with the kubelet's CrashLoopBackOff at STACKBLAZE_TIME_SCALE. Everything between the CLI
and the cluster API — manifests, server-side apply, /scale, the restart annotation, pod status, the log
pump, events — is the real Kubernetes engine's code. tests/e2e/k8s runs the same commands on a real cluster.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Stackblaze, wait_for, write_project
from tests.integration.test_drains import HttpsReceiver

WORKER = "import time\nprint('job 1 done', flush=True)\ntime.sleep(1e6)\n"
CRASHER = ("print('connecting to redis', flush=True)\nprint('boom: connection refused', flush=True)\n"
           "raise SystemExit(3)\n")
SPEC = """
project: shop
services:
  - name: worker
    start: python3 worker.py
    replicas: 2
    min_ready: 0s
    shutdown_grace: 2s
targets:
  sim:
    kind: fake
    behaviours:
      python3 worker.py: {lines: ["job 1 done"]}
      python3 crasher.py: {exits_after: 0s, exit_code: 3, lines: ["connecting to redis", "boom: connection refused"]}
"""


@pytest.fixture(params=["local", "fake"])
def where(request: pytest.FixtureRequest, sb: Stackblaze, tmp_path: Path) -> Iterator[tuple[Stackblaze, Path]]:
    """The CLI pointed at one engine: nothing (the local default) or STACKBLAZE_TARGET=sim (the fake cluster)."""
    if request.param == "fake":
        sb.env["STACKBLAZE_TARGET"] = "sim"
    project = write_project(tmp_path / "shop", SPEC, {"worker.py": WORKER, "crasher.py": CRASHER})
    yield sb, project


def running(sb: Stackblaze, service: str) -> list[dict[str, Any]]:
    return [r for r in sb.replicas(service) if r["state"] == "running"]


def test_deploy_then_ps_shows_every_replica_running(where: tuple[Stackblaze, Path]) -> None:
    sb, project = where
    out = sb.run("deploy", str(project)).out
    assert "worker: release 1 (new release), 2 replica(s)" in out
    ps = wait_for("2 running replicas", lambda: len(running(sb, "worker")) == 2 and sb.ps("worker"))
    service = ps["services"][0]
    assert (service["desired"], service["release"]) == (2, 1)
    assert sorted(r["replica"] for r in service["replicas"]) == [1, 2]


def test_scale_changes_the_count_and_keeps_it_across_a_redeploy(where: tuple[Stackblaze, Path]) -> None:
    sb, project = where
    sb.run("deploy", str(project))
    wait_for("2 running", lambda: len(running(sb, "worker")) == 2)
    assert "worker: 2 -> 3 replicas" in sb.run("scale", "worker", "--replicas", "3").out
    wait_for("3 running", lambda: len(running(sb, "worker")) == 3)
    deployed = sb.run("deploy", str(project))
    assert "keeping 3 replicas (set by scale; the spec says 2)" in deployed.err + deployed.out
    assert len(wait_for("3 still running", lambda: len(running(sb, "worker")) == 3 and running(sb, "worker"))) == 3
    sb.run("scale", "worker", "--replicas", "1")
    # Locally the highest numbers stop first; a ReplicaSet picks which pods to delete itself.
    wait_for("1 left", lambda: len(sb.replicas("worker")) == 1 and running(sb, "worker"))


def test_logs_show_each_replicas_lines(where: tuple[Stackblaze, Path]) -> None:
    sb, project = where
    sb.run("deploy", str(project))

    def lines() -> set[str]:
        return {line for line in sb.run("logs", "worker", "-n", "100").out.splitlines() if "job 1 done" in line}

    found = wait_for("a line from each replica", lambda: len(lines()) >= 2 and lines())
    assert {line.split(" | ")[0].strip() for line in found} == {"worker.1", "worker.2"}


def test_events_record_the_deploy_and_the_scale(where: tuple[Stackblaze, Path]) -> None:
    sb, project = where
    sb.run("deploy", str(project))
    sb.run("scale", "worker", "--replicas", "3")
    kinds = wait_for("deploy and scale events", lambda: {"deploy", "scale"} <= {e["kind"] for e in sb.events()}
                     and [e["kind"] for e in sb.events()])
    assert kinds.index("deploy") < kinds.index("scale")
    scale = next(e for e in sb.events() if e["kind"] == "scale")
    assert scale["message"] == "worker scaled 2 -> 3"


def test_restart_replaces_every_replica(where: tuple[Stackblaze, Path]) -> None:
    sb, project = where
    sb.run("deploy", str(project))
    before = wait_for("2 running", lambda: len(r := running(sb, "worker")) == 2 and r)

    def identity(replica: dict[str, Any]) -> Any:
        return replica.get("pod") or replica.get("pid")

    old = {identity(r) for r in before}
    assert "worker: restarting" in sb.run("restart", "worker").out
    after = wait_for("2 new replicas running", lambda: len(r := running(sb, "worker")) == 2
                     and not old & {identity(x) for x in r} and r)
    assert all(r["release"] == 1 for r in after)


def test_a_crash_loop_shows_its_exit_code_restarts_and_last_lines(where: tuple[Stackblaze, Path]) -> None:
    sb, project = where
    spec = (project / "stackblaze.yaml").read_text().replace(
        "start: python3 worker.py\n    replicas: 2\n    min_ready: 0s", "start: python3 crasher.py\n    replicas: 1")
    (project / "stackblaze.yaml").write_text(spec)
    deployed = sb.run("deploy", str(project), check=False)
    assert deployed.code == 1  # a first deploy that never becomes available is a failed deploy, on both
    # a crash loop restarts: past the moment between an exit and its restart being scheduled, the replica is
    # waiting out its backoff, starting or running, never left stopped
    replica = wait_for("two restarts, the replica waiting, starting or running", lambda: (r := sb.replicas("worker"))
                       and r[0]["restart_count"] >= 2 and r[0]["state"] in ("waiting", "starting", "running") and r[0])
    assert replica["last_exit"]["code"] == 3
    exits = wait_for("an exit event with the crash's lines", lambda: [
        e for e in sb.events("worker") if e["kind"] == "exit" and "boom: connection refused"
        in (e["details"].get("last_lines") or [])])
    assert exits[0]["details"]["code"] == 3
    table = sb.run("ps").out
    assert "exit 3" in table or "exited with code 3" in table or "code 3" in table
    previous = wait_for("the previous run's lines", lambda: "boom: connection refused" in (
        out := sb.run("logs", "worker", "--previous").out) and out)
    assert "worker.1 | connecting to redis" in previous


def test_logs_tail_joins_the_replicas_a_scale_adds(where: tuple[Stackblaze, Path]) -> None:
    sb, project = where
    sb.run("deploy", str(project))
    wait_for("2 running", lambda: len(running(sb, "worker")) == 2)
    tail = subprocess.Popen([sys.executable, "-m", "stackblaze.cli", "logs", "worker", "--tail"], env=sb.env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen: list[str] = []
    assert tail.stdout is not None
    reader = threading.Thread(target=lambda: seen.extend(iter(tail.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for("the first two replicas' lines", lambda: {"worker.1", "worker.2"} <= prefixes(seen))
        sb.run("scale", "worker", "--replicas", "3")
        wait_for("the new replica's line in the same tail", lambda: "worker.3" in prefixes(seen))
    finally:
        tail.terminate()
        tail.wait(timeout=10)
        reader.join(timeout=10)
        tail.stdout.close()


def prefixes(lines: list[str]) -> set[str]:
    return {line.split(" | ")[0].strip() for line in list(lines) if "job 1 done" in line}


def test_a_daemon_restart_keeps_what_runs_where(where: tuple[Stackblaze, Path]) -> None:
    """Locally the replicas outlive the daemon (its runner keeps them); a cluster keeps its pods, and the
    fake one, which lives in the daemon, is applied again from the stored state when the daemon starts."""
    sb, project = where
    sb.run("deploy", str(project))
    sb.run("scale", "worker", "--replicas", "3")
    wait_for("3 running", lambda: len(running(sb, "worker")) == 3)
    sb.run("daemon", "stop")
    after = wait_for("3 running after the restart", lambda: len(r := running(sb, "worker")) == 3 and r)
    assert {r["release"] for r in after} == {1}


def test_a_log_drain_gets_the_replicas_lines(where: tuple[Stackblaze, Path], tmp_path: Path) -> None:
    """A real HTTPS receiver (test_drains.py's) gets the worker's lines, read from where the engine keeps
    them: the runner's files locally, the lines pumped from the pods' log API on a cluster."""
    sb, project = where
    receiver = HttpsReceiver(tmp_path / "https")
    receiver.start()
    try:
        sb.run("deploy", str(project))
        sb.run("drains", "add", receiver.url(), "--service", "worker")
        sb.run("restart", "worker")  # new replicas print again, after the drain was added
        wait_for("the worker's line at the receiver", lambda: any(
            r["line"] == "job 1 done" and r["service"] == "worker" for r in list(receiver.records)))
    finally:
        receiver.stop()
