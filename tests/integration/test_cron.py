"""Cron services on the local engine: the real daemon's scheduler at STACKBLAZE_TIME_SCALE=0.01, so that
`* * * * *` ticks every 0.6 real seconds. Each run appends a line to a file the test reads."""

from __future__ import annotations

import json
import signal
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil

from tests.integration.conftest import Stackblaze, wait_for, write_project

SCRIPT = """\
import os, pathlib, signal, sys, time
RUN = os.environ["STACKBLAZE_RUN"]
out = pathlib.Path(os.environ["MARKERS"]) / "runs.txt"
def note(what):
    with open(out, "a") as handle:
        handle.write(f"{what} {RUN} {time.time():.3f}\\n")
"""


def cron_project(tmp_path: Path, sb: Stackblaze, body: str, *, settings: str = "", schedule: str = "* * * * *",
                 grace: str = "10s") -> Path:
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    spec = f"""\
project: crons
env:
  MARKERS: "{markers}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: job
    type: cron
    schedule: "{schedule}"
    start: python3 -u job.py
    shutdown_grace: {grace}
{settings}"""
    return write_project(tmp_path / "app", spec, {"job.py": SCRIPT + body})


def lines(tmp_path: Path, what: str | None = None) -> list[list[str]]:
    path = tmp_path / "markers" / "runs.txt"
    found = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in found if what is None or line[0] == what]


def runs(sb: Stackblaze) -> list[dict[str, Any]]:
    return sb.run("cron", "runs", "job", "--json").json()["runs"]  # type: ignore[no-any-return]


def events(sb: Stackblaze, kind: str) -> list[dict[str, Any]]:
    return [e for e in sb.events("job") if e["kind"] == kind]


def deploy(sb: Stackblaze, app: Path) -> None:
    sb.run("deploy", str(app), timeout=120)


def test_a_cron_service_runs_on_its_ticks_each_run_with_its_own_log(sb: Stackblaze, tmp_path: Path) -> None:
    app = cron_project(tmp_path, sb, 'note("ran")\nprint(f"hello from run {RUN}")\n')
    deploy(sb, app)
    wait_for("three runs", lambda: len(lines(tmp_path, "ran")) >= 3, timeout=15)
    numbers = [int(line[1]) for line in lines(tmp_path, "ran")]
    assert numbers[:3] == [1, 2, 3]
    started = [float(line[2]) for line in lines(tmp_path, "ran")][:3]
    # One minute of platform time apart: 0.6 real seconds at scale 0.01.
    assert all(0.45 < b - a < 0.9 for a, b in pairwise(started)), started
    listed = sb.run("cron", "list", "--json", cwd=app).json()["services"][0]
    assert listed["schedule"] == "* * * * *" and listed["timezone"] == "UTC"
    assert listed["next_run"] > time.time() - 0.1
    assert listed["last_run"]["exit_code"] == 0 and listed["last_run"]["duration"] is not None
    records = [json.loads(line) for line in sb.run("logs", "job", "--run", "2", "--json", cwd=app).out.splitlines()]
    assert [r["line"] for r in records] == ["hello from run 2"]
    assert "hello from run 2" in sb.run("logs", "job", cwd=app).out and "hello from run 3" in sb.run(
        "logs", "job", cwd=app).out
    states = [e["details"]["state"] for e in events(sb, "cron-run") if e["details"]["run"] == 1]
    assert states == ["started", "finished"]
    # ps shows it as scheduled runs, not as a crash-looping worker; scale is refused in one line.
    shown = sb.ps("job")["services"][0]
    assert shown["cron"]["state"] == "scheduled" or shown["cron"]["state"].startswith("running (run ")
    assert shown["replicas"] == []
    refused = sb.run("scale", "job", "--replicas", "2", cwd=app, check=False)
    assert refused.code != 0 and refused.err.count("\n") == 1 and "cron service has no replicas" in refused.err


def test_forbid_skips_a_tick_while_a_run_goes_on(sb: Stackblaze, tmp_path: Path) -> None:
    app = cron_project(tmp_path, sb, 'note("start")\ntime.sleep(1.5)\nnote("end")\n')
    deploy(sb, app)
    wait_for("a skipped tick", lambda: events(sb, "cron-skipped"), timeout=15)
    wait_for("two runs done", lambda: len(lines(tmp_path, "end")) >= 2, timeout=15)
    spans = {line[1]: [float(line[2])] for line in lines(tmp_path, "start")}
    for line in lines(tmp_path, "end"):
        spans[line[1]].append(float(line[2]))
    done = sorted(span for span in spans.values() if len(span) == 2)
    assert all(b[0] >= a[1] for a, b in pairwise(done)), f"runs overlapped: {done}"
    skipped = events(sb, "cron-skipped")[0]
    assert skipped["details"]["reason"] == "forbid" and "still going" in skipped["message"]


def test_replace_stops_the_old_run_for_the_new_one(sb: Stackblaze, tmp_path: Path) -> None:
    body = ('signal.signal(signal.SIGTERM, lambda *_: (note("term"), sys.exit(143)))\n'
            'note("start")\ntime.sleep(60)\n')
    app = cron_project(tmp_path, sb, body, settings="    concurrency: replace\n")
    deploy(sb, app)
    wait_for("run 2 started", lambda: len(lines(tmp_path, "start")) >= 2, timeout=15)
    wait_for("run 1 told to stop", lambda: [line[1] for line in lines(tmp_path, "term")][:1] == ["1"], timeout=10)
    first = wait_for("run 1 recorded", lambda: next((r for r in runs(sb) if r["run"] == 1 and r["ended"]), None))
    assert first["reason"] == "replaced" and first["exit_code"] == 143
    assert any("replaced by a newer run" in e["message"] for e in events(sb, "cron-run"))
    assert not [e for e in events(sb, "cron-failed") if e["details"]["run"] == 1]  # stopped on purpose


def test_timeout_stops_a_run_that_overstays(sb: Stackblaze, tmp_path: Path) -> None:
    # timeout 30s of platform time: 0.3 real seconds; the run would take 60 real seconds.
    app = cron_project(tmp_path, sb, 'note("start")\ntime.sleep(60)\n', schedule="0 0 1 1 *",
                       settings="    timeout: 30s\n    retries: 2\n")
    deploy(sb, app)
    number = sb.run("cron", "run", "job", "--json", cwd=app).json()["run"]
    ended = wait_for("the run stopped", lambda: next((r for r in runs(sb) if r["run"] == number and r["ended"]),
                                                     None), timeout=10)
    assert ended["exit_signal"] == "SIGTERM" and ended["reason"] == "timeout" and ended["exit_code"] is None
    assert 0.25 < ended["duration"] < 5, ended
    failed = wait_for("cron-failed", lambda: events(sb, "cron-failed"))
    assert "stopped by its timeout (30s)" in failed[0]["message"] and failed[0]["details"]["exit_signal"] == "SIGTERM"
    assert len(runs(sb)) == 1  # a timeout ends a run's retries, as activeDeadlineSeconds ends a Job's


def test_retries_run_a_failing_run_again_and_cron_run_runs_now(sb: Stackblaze, tmp_path: Path) -> None:
    app = cron_project(tmp_path, sb, 'note("ran")\nprint("boom: the report failed", file=sys.stderr)\nsys.exit(3)\n',
                       schedule="0 0 1 1 *", settings="    retries: 2\n")
    deploy(sb, app)
    said = sb.run("cron", "run", "job", cwd=app).out
    assert said.startswith("job: run 1 started") and "logs job --run 1" in said
    wait_for("three attempts", lambda: len([r for r in runs(sb) if r["ended"]]) >= 3, timeout=15)
    done = sorted(runs(sb), key=lambda r: r["run"])
    assert [(r["trigger"], r["attempt"], r["exit_code"]) for r in done] == [
        ("manual", 1, 3), ("retry", 2, 3), ("retry", 3, 3)]
    failed = wait_for("three cron-failed", lambda: len(events(sb, "cron-failed")) >= 3 and events(sb, "cron-failed"))
    assert failed[0]["details"]["last_lines"] == ["boom: the report failed"]
    assert "exit 3" in failed[0]["message"]


def test_suspend_stops_ticks_and_resume_brings_them_back(sb: Stackblaze, tmp_path: Path) -> None:
    app = cron_project(tmp_path, sb, 'note("ran")\n')
    deploy(sb, app)
    wait_for("a run", lambda: lines(tmp_path, "ran"), timeout=15)
    sb.run("cron", "suspend", "job", cwd=app)
    count = len(lines(tmp_path, "ran"))
    deploy(sb, app)  # a redeploy keeps the suspension
    listed = sb.run("cron", "list", "--json", cwd=app).json()["services"][0]
    assert listed["suspended"] is True and listed["state"] == "suspended" and listed["next_run"] is None
    # Five ticks' worth of real time (3 s) with nothing run: a window observed, the point of the test.
    until = time.time() + 3.0
    wait_for("the window to pass", lambda: time.time() > until, timeout=10)
    assert len(lines(tmp_path, "ran")) <= count + 1  # at most one that had started when suspend came
    sb.run("cron", "resume", "job", cwd=app)
    wait_for("runs again", lambda: len(lines(tmp_path, "ran")) >= count + 2, timeout=15)


def kill_daemon(sb: Stackblaze) -> None:
    daemon = psutil.Process(sb.daemon_pid())
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(10)


def _down_over_ticks(sb: Stackblaze, app: Path, tmp_path: Path) -> tuple[int, float]:
    """Kill -9 the daemon, stay down over two ticks, start it again: the runs before, and when it is back."""
    wait_for("a run", lambda: lines(tmp_path, "ran"), timeout=15)
    next_run = sb.run("cron", "list", "--json", cwd=app).json()["services"][0]["next_run"]
    kill_daemon(sb)
    before = len(lines(tmp_path, "ran"))
    until = next_run + 2 * 1.2 + 0.2  # two ticks of */2 pass while it is down
    wait_for("two ticks to pass", lambda: time.time() > until, timeout=15)
    back = time.time()
    sb.run("cron", "list", "--json", cwd=app)  # starts the daemon
    return before, back


def test_a_daemon_down_over_ticks_runs_nothing_late(sb: Stackblaze, tmp_path: Path) -> None:
    app = cron_project(tmp_path, sb, 'note("ran")\n', schedule="*/2 * * * *")
    deploy(sb, app)
    before, _ = _down_over_ticks(sb, app, tmp_path)
    wait_for("a run after the restart", lambda: len(lines(tmp_path, "ran")) > before, timeout=15)
    after = sorted(runs(sb), key=lambda r: r["run"])[before:]
    assert after[0]["trigger"] == "schedule", after
    assert not [r for r in runs(sb) if r["trigger"] == "catch-up"]
    skipped = [e for e in events(sb, "cron-skipped") if e["details"].get("reason") == "daemon-down"]
    assert skipped and skipped[0]["details"]["missed"] >= 2 and "not run late" in skipped[0]["message"]


def test_a_daemon_down_over_ticks_with_catch_up_runs_once(sb: Stackblaze, tmp_path: Path) -> None:
    app = cron_project(tmp_path, sb, 'note("ran")\n', schedule="*/2 * * * *", settings="    catch_up: true\n")
    deploy(sb, app)
    _, back = _down_over_ticks(sb, app, tmp_path)
    caught = wait_for("the catch-up run", lambda: [r for r in runs(sb) if r["trigger"] == "catch-up"], timeout=15)
    assert len(caught) == 1 and caught[0]["started"] >= back - 0.05
    wait_for("the next tick's run", lambda: [r for r in runs(sb) if r["run"] > caught[0]["run"]], timeout=15)
    assert len([r for r in runs(sb) if r["trigger"] == "catch-up"]) == 1  # two missed ticks, one run
