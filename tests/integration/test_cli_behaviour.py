"""The CLI behaves like the tools people know: confirmations, exit codes, help, --json errors, log windows,
empty stdin, the Procfile web note, release paths, and `daemon stop --all` that stays stopped."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Stackblaze, instance_pids, wait_for, write_project

TICKER = "import itertools, time\nfor i in itertools.count():\n    print('tick', i, flush=True)\n    time.sleep(0.02)\n"
SPEC = "project: shop\nservices:\n  - name: worker\n    start: python3 -u ticker.py\n    replicas: 2\n"


@pytest.fixture
def shop(sb: Stackblaze, tmp_path: Path) -> Path:
    app = write_project(tmp_path / "shop", SPEC, {"ticker.py": TICKER})
    sb.run("deploy", cwd=app)
    return app


def run_on_terminal(sb: Stackblaze, *args: str, answer: str, cwd: Path) -> tuple[int, str]:
    """Run the CLI with a terminal as stdin (a pty), type `answer`, return the exit code and what it said."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "stackblaze.cli", *args], stdin=follower,
                            stdout=follower, stderr=follower, env=sb.env, cwd=cwd)
    os.close(follower)
    said = b""
    deadline = time.monotonic() + 30
    while b"?" not in said and time.monotonic() < deadline:  # the question, before answering it
        said += os.read(leader, 4096)
    os.write(leader, answer.encode())
    code = proc.wait(timeout=60)
    try:
        while chunk := os.read(leader, 4096):
            said += chunk
    except OSError:  # EIO: the other side closed
        pass
    os.close(leader)
    return code, said.decode(errors="replace")


def test_destroy_asks_on_a_terminal_and_refuses_without_one(sb: Stackblaze, shop: Path) -> None:
    piped = sb.run("destroy", check=False, stdin="y\n", cwd=shop)
    assert piped.code == 2
    assert piped.err.strip() == ("error: destroy: stdin is not a terminal, so nobody can confirm: pass --yes "
                                 "(e.g. stackblaze destroy --project shop --yes)")
    code, said = run_on_terminal(sb, "destroy", answer="n\n", cwd=shop)
    assert code == 1, said
    assert "Destroy project shop" in said and "project shop is left as it was" in said
    assert sb.run("ps", "--json", cwd=shop).json()["project"] == "shop"
    code, said = run_on_terminal(sb, "destroy", answer="y\n", cwd=shop)
    assert code == 0 and "project shop destroyed" in said
    assert sb.run("ps", "--json").json()["projects"] == []


@pytest.mark.parametrize("args", [
    ("events", "nosuch"), ("logs", "nosuch"), ("logs", "worker", "--replica", "9"), ("ps", "nosuch"),
    ("scale", "nosuch", "-r", "1"), ("restart", "nosuch"), ("stop", "nosuch"), ("start", "nosuch"),
    ("releases", "nosuch"), ("rollback", "nosuch"), ("logs", "nosuch", "--build"),
    ("env", "set", "A=1", "--service", "nosuch"), ("rollout", "status", "nosuch"),
    ("drains", "add", "syslog://127.0.0.1:6514", "--service", "nosuch"),
])
def test_an_unknown_service_or_replica_exits_3(sb: Stackblaze, shop: Path, args: tuple[str, ...]) -> None:
    result = sb.run(*args, check=False, cwd=shop)
    assert result.code == 3, result.err
    assert result.err.startswith("error: ") and result.err.count("\n") == 1
    assert ("replica 9 not found (worker has 2" if "--replica" in args else "'nosuch' not found") in result.err
    as_json = sb.run(*args, "--json", check=False, cwd=shop)
    assert as_json.code == 3 and as_json.out == ""
    error = json.loads(as_json.err)
    assert error == {"error": result.err.strip().removeprefix("error: "), "kind": "NotFoundError", "exit_code": 3}


def commands(sb: Stackblaze) -> list[list[str]]:
    """Every command, found in the help as a user finds it (groups opened)."""
    def listed(*group: str) -> list[str]:
        text = sb.run(*group, "--help").out
        block = text.split("Commands:\n")[1].split("\n\n")[0]
        return [line.split()[0] for line in block.splitlines() if line.startswith("  ") and line.split()]

    found = []
    for name in listed():
        sub = sb.run(name, "--help").out
        found += [[name, each] for each in listed(name)] if "Commands:" in sub else [[name]]
    return found


def test_help_version_and_examples_like_other_tools(sb: Stackblaze) -> None:
    alone = sb.run()
    assert alone.code == 0 and alone.out.startswith("Usage: stackblaze [OPTIONS] COMMAND") and alone.err == ""
    assert sb.run("-h").out == alone.out == sb.run("--help").out
    assert re.fullmatch(r"stackblaze \d+\.\d+\.\d+\n", sb.run("--version").out)
    group = sb.run("env")
    assert group.code == 0 and group.out.startswith("Usage: stackblaze env [OPTIONS] COMMAND")
    found = commands(sb)
    assert ["ps"] in found and ["env", "set"] in found and ["daemon", "stop"] in found and len(found) >= 20
    for command in found:
        text = sb.run(*command, "-h").out
        assert re.search(r"Examples:\n    .*stackblaze ", text), f"stackblaze {' '.join(command)} -h has no examples"
        assert "--json" in text, f"stackblaze {' '.join(command)} has no --json"
    assert not sb.home.exists() or not (sb.home / "api.sock").exists()  # help starts no daemon


def test_usage_errors_are_json_with_json(sb: Stackblaze) -> None:
    result = sb.run("scale", "worker", "--json", check=False)
    assert result.code == 2
    error = json.loads(result.err)
    assert error["kind"] == "MissingParameter" and error["exit_code"] == 2 and "--replicas" in error["error"]
    bad = sb.run("logs", "--since", "yesterday", "--json", check=False)
    assert bad.code == 2 and json.loads(bad.err)["error"].startswith("--since: 'yesterday'")


def test_logs_since_and_lines_both_apply(sb: Stackblaze, shop: Path) -> None:
    def last_tick() -> int:
        lines = sb.run("logs", "worker", "--replica", "1", "-n", "1", "--json", cwd=shop).out.splitlines()
        return int(json.loads(lines[0])["line"].split()[1]) if lines else -1

    wait_for("60 ticks of worker.1", lambda: last_tick() >= 60)
    last4 = sb.run("logs", "worker", "--replica", "1", "--since", "1m", "-n", "4", "--json", cwd=shop).out
    records = [json.loads(line) for line in last4.splitlines()]
    assert len(records) == 4
    numbers = [int(r["line"].split()[1]) for r in records]
    assert numbers == list(range(numbers[0], numbers[0] + 4)) and numbers[0] >= 57  # the newest four
    since_only = sb.run("logs", "worker", "--replica", "1", "--since", "1m", "--json", cwd=shop).out
    assert [json.loads(line)["line"] for line in since_only.splitlines()][:1] == ["tick 0"]  # all of them


def test_env_set_key_with_empty_stdin_refuses(sb: Stackblaze, shop: Path) -> None:
    result = sb.run("env", "set", "API_TOKEN", "--secret", check=False, stdin="", cwd=shop)
    assert result.code == 2
    assert result.err.startswith("error: env set API_TOKEN: no value on stdin (pipe one")
    assert "API_TOKEN" not in sb.run("env", "list", cwd=shop).out
    sb.run("env", "set", "API_TOKEN", "--secret", stdin="s3cret\n", cwd=shop)
    assert "API_TOKEN=" in sb.run("env", "list", cwd=shop).out


def test_procfile_web_note_gives_advice_that_works(sb: Stackblaze, tmp_path: Path) -> None:
    app = tmp_path / "site"
    app.mkdir()
    (app / "web.py").write_text("import os\nprint('web would listen on', os.environ['PORT'])\n")
    (app / "Procfile").write_text("web: python3 web.py --port $PORT\nworker: python3 -c 'import time; "
                                  "time.sleep(1e6)'\n")
    result = sb.run("deploy", cwd=app)
    note = next(line for line in result.err.splitlines() if line.startswith("note: Procfile:1"))
    advice = note.split("run it yourself: ", 1)[1]
    assert advice == f"cd {app} && PORT=5000 python3 web.py --port $PORT"
    ran = subprocess.run(["sh", "-c", advice], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert ran.returncode == 0 and ran.stdout == "web would listen on 5000\n"


def test_releases_show_their_path(sb: Stackblaze, shop: Path) -> None:
    listed = sb.run("releases", "worker", "--json", cwd=shop).json()["releases"]
    path = Path(listed[-1]["path"])
    assert (path / "ticker.py").is_file()
    assert str(path) in sb.run("releases", "worker", cwd=shop).out


def test_daemon_restart_after_stop_all_leaves_workers_stopped(sb: Stackblaze, shop: Path) -> None:
    wait_for("2 workers", lambda: len(instance_pids(sb.home)) == 2)
    assert sb.run("daemon", "stop", "--all").out.strip() == "daemon and workers stopped"
    assert instance_pids(sb.home) == set()
    sb.run("daemon", "start")
    # The daemon reconciles before it answers: a replica it started would be in ps and in /proc by now.
    ps = sb.run("ps", "--json", cwd=shop).json()["services"][0]
    assert ps["running_flag"] is False and ps["running"] == 0 and ps["desired"] == 0
    assert instance_pids(sb.home) == set()
    assert "stopped by `daemon stop --all`" in sb.run("events", "worker", cwd=shop).out
    assert sb.run("start", cwd=shop).out.strip() == "started worker"
    wait_for("2 workers again", lambda: len(instance_pids(sb.home)) == 2)
