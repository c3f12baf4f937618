"""`stackblaze demo` runs to its end whatever an earlier demo left behind, and never shows a traceback."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import Stackblaze

END = "The demo keeps running."


def demo(sb: Stackblaze) -> str:
    result = sb.run("demo", "--seconds", "0.5", timeout=120)
    assert "Traceback" not in result.out + result.err
    assert END in result.out
    return result.out


def test_the_demo_runs_again_after_it_was_scaled_stopped_or_scaled_to_zero(sb: Stackblaze) -> None:
    first = demo(sb)
    assert "5. stackblaze ps, after the restart" in first

    sb.run("scale", "worker", "--replicas", "3", "--project", "demo")
    assert "3 replicas" in demo(sb)  # the kept count, all of them running, not a wait for exactly 2
    assert sum(r["state"] == "running" for r in sb.replicas("worker")) == 3

    sb.run("stop", "worker", "--project", "demo")
    assert "worker was stopped (stackblaze stop): starting it" in demo(sb)

    sb.run("scale", "worker", "--replicas", "0", "--project", "demo")
    assert "worker was scaled to 0: scaling it to 2" in demo(sb)
    assert sum(r["state"] == "running" for r in sb.replicas("worker")) == 2


def test_a_home_where_no_daemon_can_start_is_one_line(sb: Stackblaze, tmp_path: Path) -> None:
    home = tmp_path / "a-file"
    home.write_text("not a directory")
    sb.env["STACKBLAZE_HOME"] = str(home)
    result = sb.run("demo", check=False)
    assert result.code == 4
    assert "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1] == (
        f"error: cannot start the daemon: {home}/run/daemon.lock: Not a directory (STACKBLAZE_HOME is {home}; "
        "set it to a directory you can write)")
