"""Deploy, ps, scale, restart policy and env, through the real CLI against a real daemon."""

from __future__ import annotations

import stat
from pathlib import Path

import psutil

from tests.integration.conftest import Stackblaze, instance_pids, wait_for, write_project

SLEEPER = "import os, time\nprint('up', os.environ['STACKBLAZE_REPLICA'], flush=True)\ntime.sleep(1e6)\n"


def running(sb: Stackblaze, service: str) -> list[dict]:
    return [r for r in sb.replicas(service) if r["state"] == "running"]


def test_two_services_deploy_and_scale_to_exactly_the_requested_processes(sb: Stackblaze, tmp_path: Path) -> None:
    """Both services run their replicas; after 1 -> 5 -> 2 exactly two processes of that service exist."""
    project = write_project(tmp_path / "app", f"""
project: shop
env:
  PROBE_HOME: {sb.home}
services:
  - name: emails
    start: python3 sleeper.py
    replicas: 1
  - name: reports
    start: python3 sleeper.py
    replicas: 2
""", {"sleeper.py": SLEEPER})
    sb.run("deploy", str(project))
    ps = wait_for("both services running", lambda: (
        s := sb.ps()) and [x["running"] for x in s["services"]] == [1, 2] and s)
    assert [s["service"] for s in ps["services"]] == ["emails", "reports"]

    def real_pids(service: str) -> set[int]:
        # psutil, not our state: live processes running our sleeper with this service in their env
        return {p.pid for p in psutil.process_iter(["environ", "cmdline", "status"])
                if p.info["status"] != psutil.STATUS_ZOMBIE and "sleeper.py" in " ".join(p.info["cmdline"] or [])
                and (p.info["environ"] or {}).get("STACKBLAZE_SERVICE") == service
                and (p.info["environ"] or {}).get("PROBE_HOME") == str(sb.home)}

    sb.run("scale", "emails", "--replicas", "5")
    wait_for("5 emails processes", lambda: len(real_pids("emails")) == 5)
    assert len(running(sb, "emails")) == 5
    sb.run("scale", "emails", "--replicas", "2")
    wait_for("exactly 2 emails processes", lambda: len(real_pids("emails")) == 2)
    assert {r["replica"] for r in sb.replicas("emails")} == {1, 2}
    assert {r["pid"] for r in running(sb, "emails")} == real_pids("emails")
    assert len(real_pids("reports")) == 2  # the other service was not touched


def test_crashing_worker_restarts_at_once_then_with_doubling_gaps(sb: Stackblaze, tmp_path: Path) -> None:
    """Exit 3 at once: restart 1 immediately, then 0.1, 0.2, 0.4, 0.8 s apart at time scale 0.01
    (10, 20, 40, 80 s real). Gaps are measured exit -> next start from the events' timestamps."""
    project = write_project(tmp_path / "app", """
project: crashy
services:
  - name: worker
    start: python3 -c "import sys; print('dying', flush=True); sys.exit(3)"
""")
    assert sb.run("deploy", str(project), check=False).code == 1  # the rollout failed; the policy goes on
    starts_needed = 6
    events = wait_for("6 starts", lambda: (
        e := sb.events("worker")) and sum(x["kind"] == "start" for x in e) >= starts_needed and e, timeout=30)
    starts = [e["at"] for e in events if e["kind"] == "start"]
    exits = [e for e in events if e["kind"] == "exit"]
    gaps = [starts[i + 1] - exits[i]["details"]["at"] for i in range(starts_needed - 1)]
    expected = [0.0, 0.1, 0.2, 0.4, 0.8]
    tolerance = 0.08  # a process spawn plus event delivery; the timer itself is exact
    for gap, want in zip(gaps, expected, strict=True):
        assert want - 0.005 <= gap <= want + tolerance, (gaps, expected)
    assert all(e["details"]["code"] == 3 for e in exits)
    replica = wait_for("restart count >= 5", lambda: (
        r := sb.replicas("worker")[0]) and r["restart_count"] >= 5 and r)
    assert replica["last_exit"]["code"] == 3
    assert replica["last_exit"]["meaning"].startswith("exit 3")


def test_worker_exiting_zero_is_restarted_too(sb: Stackblaze, tmp_path: Path) -> None:
    """A worker that finishes cleanly is still restarted: workers must run continuously."""
    project = write_project(tmp_path / "app", """
project: clean
services:
  - name: worker
    start: python3 -c "print('done', flush=True)"
""")
    assert sb.run("deploy", str(project), check=False).code == 1  # exit 0 is an exit too
    replica = wait_for("two restarts", lambda: (r := sb.replicas("worker")[0]) and r["restart_count"] >= 2 and r)
    assert replica["last_exit"]["code"] == 0
    logs = sb.run("logs", "worker", "-n", "10").out.splitlines()
    assert logs.count("worker.1 | done") >= 2


def test_waiting_replica_shows_when_it_restarts(sb: Stackblaze, tmp_path: Path) -> None:
    """Between crashes ps shows `waiting` with the next restart time and the last exit."""
    project = write_project(tmp_path / "app", """
project: slow
services:
  - name: worker
    start: python3 -c "raise SystemExit(7)"
""")
    assert sb.run("deploy", str(project), check=False).code == 1
    # the 7th restart waits 160 s * 0.01 = 1.6 s: long enough to observe
    replica = wait_for("a waiting replica", lambda: (
        r := sb.replicas("worker")[0]) and r["state"] == "waiting" and r["restart_count"] >= 5 and r)
    assert replica["next_restart_at"] > replica["last_exit"]["at"]
    table = sb.run("ps").out
    assert "waiting (crash loop, restart in" in table and "exit 7" in table


def test_secret_is_in_the_worker_env_and_nowhere_in_our_output(sb: Stackblaze, tmp_path: Path) -> None:
    """`env set --secret`: the worker gets the value; env list, ps, events, API and logs of the daemon don't."""
    secret = "hunter2-Zq9xW7-very-secret"
    probe = tmp_path / "seen.txt"
    project = write_project(tmp_path / "app", f"""
project: vault
env:
  PROBE: {probe}
services:
  - name: worker
    start: python3 worker.py
""", {"worker.py": "import os, time\nopen(os.environ['PROBE'], 'w').write(os.environ.get('API_TOKEN', ''))\n"
                   "time.sleep(1e6)\n"})
    sb.run("deploy", str(project))
    sb.run("env", "set", "API_TOKEN", "--secret", stdin=secret + "\n")  # from stdin: never in argv
    wait_for("the worker to see the secret", lambda: probe.exists() and probe.read_text() == secret)
    outputs = [
        sb.run("env", "list").out, sb.run("env", "list", "--json").out, sb.run("ps", "--json").out,
        sb.run("ps").out, sb.run("events", "--json").out, sb.run("events").out,
        sb.run("logs", "-n", "1000").out,
    ]
    for out in outputs:
        assert secret not in out
    assert "API_TOKEN=••••••" in outputs[0]
    for path in sb.home.rglob("*"):
        if path.is_file() and path.name != "seen.txt":
            assert secret.encode() not in path.read_bytes(), f"secret found in {path}"
    assert instance_pids(sb.home)


def test_env_set_restarts_replicas_with_the_new_value(sb: Stackblaze, tmp_path: Path) -> None:
    """`env set` rolls the replicas: new PIDs, and they see the value."""
    project = write_project(tmp_path / "app", """
project: envy
services:
  - name: worker
    start: python3 worker.py
    replicas: 2
""", {"worker.py": "import os, time\nprint('concurrency', os.environ.get('WORKER_CONCURRENCY'), flush=True)\n"
                   "time.sleep(1e6)\n"})
    sb.run("deploy", str(project))
    first = wait_for("2 running", lambda: len(r := running(sb, "worker")) == 2 and r)
    before = {r["pid"] for r in first}
    sb.run("env", "set", "WORKER_CONCURRENCY=5")
    after = wait_for("2 new replicas", lambda: (
        r := running(sb, "worker")) and len(r) == 2 and not {x["pid"] for x in r} & before and r)
    assert len(after) == 2
    wait_for("both see the value", lambda: sb.run("logs", "worker", "-n", "50").out.count("concurrency 5") == 2)
    assert sb.run("env", "list").out.strip() == "WORKER_CONCURRENCY=5"


def test_api_socket_is_private_to_its_user(sb: Stackblaze) -> None:
    """The daemon's API is a unix socket of mode 0600 (no TCP listener), and so is the runner's."""
    sb.run("daemon", "start")
    for path in (sb.home / "api.sock", sb.home / "run" / "runner.sock"):
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, (path, oct(mode))
    listening = [c for c in psutil.Process(sb.daemon_pid()).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening == []
