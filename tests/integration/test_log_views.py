"""What users read: JSON logs filtered by level/field, and exits that explain themselves."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.integration.conftest import Stackblaze, wait_for, write_project

JSON_WORKER = """
import json, time
levels = ["debug", "info", "warning", "error", "info", "error"]
for i, level in enumerate(levels):
    print(json.dumps({"level": level, "msg": f"step {i}", "queue": "emails" if i % 2 else "sms", "n": i}), flush=True)
print("plain line, no json", flush=True)
time.sleep(1e6)
"""


def test_json_logs_filter_by_level_and_field_and_print_ndjson(sb: Stackblaze, tmp_path: Path) -> None:
    """`--level error` shows only errors; `--field` matches JSON fields; `--json` is one record per line."""
    spec = "project: j\nservices:\n  - name: w\n    start: python3 w.py\n"
    sb.run("deploy", str(write_project(tmp_path / "app", spec, {"w.py": JSON_WORKER})))
    wait_for("all lines logged", lambda: "plain line" in sb.run("logs", "w").out)
    errors = sb.run("logs", "w", "--level", "error").out.splitlines()
    assert errors == ["w.1 | ERROR  step 3  queue=emails  n=3", "w.1 | ERROR  step 5  queue=emails  n=5"]
    warn_and_up = sb.run("logs", "w", "--level", "warn", "--json").out.splitlines()
    records = [json.loads(line) for line in warn_and_up]  # every line parses on its own
    assert [(r["level"], r["message"]) for r in records] == [
        ("warn", "step 2"), ("error", "step 3"), ("error", "step 5")]
    assert records[0]["fields"] == {"queue": "sms", "n": 2} and records[0]["stream"] == "stdout"
    sms = sb.run("logs", "w", "--field", "queue=sms", "--json").out.splitlines()
    assert [json.loads(line)["message"] for line in sms] == ["step 0", "step 2", "step 4"]
    plain = sb.run("logs", "w", "--grep", "plain").out.splitlines()
    assert plain == ["w.1 | plain line, no json"]
    raw = sb.run("logs", "w", "-n", "1", "--raw", "--grep", "step 5").out.strip()
    assert json.loads(raw.split(" | ", 1)[1])["level"] == "error"


def test_exit_events_explain_the_crash_with_its_last_lines(sb: Stackblaze, tmp_path: Path) -> None:
    """An exception: exit 1 with the traceback in the event. A SIGKILL from outside: said so, not guessed."""
    project = write_project(tmp_path / "app", """
project: crash
services:
  - name: raiser
    start: python3 raiser.py
  - name: victim
    start: python3 victim.py
""", {"raiser.py": "print('connecting to the queue', flush=True)\nraise RuntimeError('queue connection lost')\n",
      "victim.py": "import os, time\nprint('working as', os.getpid(), flush=True)\ntime.sleep(1e6)\n"})
    assert sb.run("deploy", str(project), check=False).code == 1  # the raiser never became available
    exit_event = wait_for("the raiser's exit", lambda: next(
        (e for e in sb.events("raiser") if e["kind"] == "exit"), None))
    assert exit_event["details"]["code"] == 1
    assert exit_event["details"]["meaning"] == "exit 1: general error"
    tail = exit_event["details"]["last_lines"]
    assert tail[0] == "connecting to the queue" and tail[-1] == "RuntimeError: queue connection lost"
    assert "Traceback (most recent call last):" in tail
    pid = wait_for("the victim running", lambda: (r := sb.replicas("victim")[0])["state"] == "running" and r["pid"])
    wait_for("the victim's first line", lambda: "working as" in sb.run("logs", "victim").out)
    os.kill(pid, signal.SIGKILL)
    killed = wait_for("the victim's exit", lambda: next((e for e in sb.events("victim") if e["kind"] == "exit"), None))
    assert killed["details"]["signal"] == "SIGKILL"
    assert killed["details"]["meaning"] == "killed by SIGKILL (not by stackblaze)"
    assert killed["details"]["last_lines"] == [f"working as {pid}"]
    shown = sb.run("events", "raiser").out
    assert "RuntimeError: queue connection lost" in shown


def test_log_retention_from_the_spec_bounds_each_replica(sb: Stackblaze, tmp_path: Path) -> None:
    """`logs: {max_size: 64Ki, max_files: 2}`: rotation keeps two files per replica, each near 64 KiB,
    and the newest lines are all still there."""
    worker = ("import sys\nfor i in range(20000):\n    print(f'line {i:06d} ' + 'x' * 80)\n"
              "sys.stdout.flush()\nimport time\ntime.sleep(1e6)\n")
    spec = ("project: keep\nservices:\n  - name: w\n    start: python3 w.py\n"
            "    logs: {max_size: 64Ki, max_files: 2}\n")
    sb.run("deploy", str(write_project(tmp_path / "app", spec, {"w.py": worker})))
    wait_for("the last line", lambda: "line 019999" in sb.run("logs", "w", "-n", "1").out)
    files = sorted((sb.home / "logs" / "keep" / "w").iterdir())
    assert [f.name for f in files] == ["1.log", "1.log.1"]
    assert all(f.stat().st_size < 64 * 1024 + 1024 * 1024 for f in files)  # one read chunk past the limit at most
    kept = sb.run("logs", "w", "-n", "100000", "--json").out.splitlines()
    numbers = [int(json.loads(line)["line"].split()[1]) for line in kept]
    assert numbers == list(range(numbers[0], 20000))  # a contiguous tail, nothing missing inside it
