"""A worker's output cannot drive the user's terminal: control characters are shown escaped (`\\x1b`) when the
CLI prints to a terminal (a real pty here), kept with --raw, and left alone in pipes and in --json."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import Stackblaze, wait_for, write_project

SPEC = """\
project: shell
services:
  - name: worker
    start: python3 -u worker.py
"""
# A window title change, a screen clear, colours, a bell, DEL, a C1 CSI, a carriage return that would hide
# the start of the line, and a JSON line whose message carries an escape.
LINE = "evil \x1b]0;pwned\x07 \x1b[2J \x1b[31mred\x1b[0m bell\x07 del\x7f c1\u009b[2J hidden\rshown"
WORKER = f"""
import json, sys
sys.stdout.write({LINE!r} + "\\n")
sys.stdout.write(json.dumps({{"level": "info", "msg": "json \\x1b[2J"}}) + "\\n")
sys.stdout.flush()
sys.exit(3)
"""
HOSTILE = [b"\x1b]0;pwned", b"\x1b[2J", b"\x07", b"\x7f", "\u009b".encode(), b"hidden\rshown"]


def on_a_terminal(sb: Stackblaze, *args: str) -> bytes:
    """Everything `stackblaze ARGS` writes when its stdout and stderr are a real pty."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "stackblaze.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=child, stderr=child, env={**sb.env, "TERM": "xterm-256color"})
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the last writer closed its side
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    return out


def test_control_characters_are_escaped_on_a_terminal_only(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC, {"worker.py": WORKER})), check=False)
    wait_for("an exit event with the worker's last lines", lambda: any(
        e["kind"] == "exit" and e["details"].get("last_lines") for e in sb.events("worker")))

    shown = on_a_terminal(sb, "logs", "worker", "-n", "2")
    print(f"logs on a terminal: {shown!r}")
    for raw in HOSTILE:
        assert raw not in shown, raw
    for escaped in (rb"\x1b]0;pwned\x07", rb"\x1b[2J", rb"bell\x07", rb"del\x7f", rb"c1\x9b[2J", rb"hidden\x0dshown",
                    rb"json \x1b[2J"):
        assert escaped in shown, escaped

    events = on_a_terminal(sb, "events", "worker")
    assert rb"\x1b]0;pwned\x07" in events and b"\x1b]0;pwned" not in events

    raw = on_a_terminal(sb, "logs", "worker", "-n", "2", "--raw")
    assert b"evil \x1b]0;pwned\x07 \x1b[2J" in raw and b'"msg": "json \\u001b[2J"' in raw

    piped = subprocess.run([sys.executable, "-m", "stackblaze.cli", "logs", "worker", "-n", "2"], env=sb.env,
                           capture_output=True, check=True).stdout  # bytes: text mode would turn \r into \n
    assert f"worker.1 | {LINE}\n".encode() in piped

    records = [json.loads(line) for line in sb.run("logs", "worker", "-n", "2", "--json").out.splitlines()]
    assert records[0]["line"] == LINE
    assert records[1]["message"] == "json \x1b[2J"
