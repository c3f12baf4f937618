"""Log drains against real receivers on 127.0.0.1: rsyslog (TLS and plain TCP) parses every message itself,
and an HTTPS server that fails with 503, goes away and comes back; a daemon killed (-9) while a drain is
behind resumes from its cursor. The real CLI and daemon throughout."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.conftest import Stackblaze, wait_for, write_project
from tests.rsyslog import write_rsyslog_conf
from tests.tls import make_certificate
from tests.tools import need

FIELDS = ("%PROTOCOL-VERSION% %APP-NAME% %PROCID% %MSGID% %STRUCTURED-DATA% %PRI% "
          "%TIMESTAMP:::date-rfc3339% %HOSTNAME% %msg%\\n")
PARSED = re.compile(r"^1 (\S+) (\S+) - - (\d+) (\S+) (\S+) (.*)$")
RFC3339_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]00:00)$")

# Prints its lines in phases: each phase starts when the test creates the file `go<phase>`.
WORKER = """
import os, sys, time
go = os.environ["GO_DIR"]
phases = [int(n) for n in os.environ["PHASES"].split(",")]
n = 0
for phase, count in enumerate(phases, 1):
    while not os.path.exists(os.path.join(go, f"go{phase}")):
        time.sleep(0.01)
    for start in range(n, n + count, 1000):
        end = min(start + 1000, n + count)
        sys.stdout.write("".join(f"n={i:06d} the quick brown fox\\n" for i in range(start, end)))
    sys.stdout.flush()
    n += count
time.sleep(1e6)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy_printer(sb: Stackblaze, tmp_path: Path, phases: list[int]) -> Path:
    go = tmp_path / "go"
    go.mkdir()
    spec = f"""
project: drained
env:
  GO_DIR: "{go}"
  PHASES: "{','.join(map(str, phases))}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: printer
    start: python3 printer.py
"""
    sb.run("deploy", str(write_project(tmp_path / "app", spec, {"printer.py": WORKER})))
    wait_for("the printer running", lambda: sb.replicas("printer")[0]["state"] == "running")
    return go


def drain(sb: Stackblaze, drain_id: int) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in sb.run("drains", "list", "--json").json()["drains"] if d["id"] == drain_id)
    return found


def drain_until(sb: Stackblaze, drain_id: int, what: str, check: Callable[[dict[str, Any]], bool],
                timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the drain's `drains list --json` entry satisfies `check`; a timeout shows the last one."""
    last: dict[str, Any] = {}

    def probe() -> bool:
        nonlocal last
        last = drain(sb, drain_id)
        return check(last)
    try:
        wait_for(what, probe, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the drain: {last}") from None
    return last


def numbers(texts: list[str]) -> list[int]:
    return [int(text.split()[0][2:]) for text in texts]


# -- rsyslog --------------------------------------------------------------------------------------------


@pytest.fixture
def rsyslog(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """rsyslogd on its own port with its own config and pid file; yields (drain URL, the parsed-fields file)."""
    rsyslogd = need("rsyslogd")
    tls: bool = request.param
    folder = tmp_path / "rsyslog"
    cert, key = make_certificate(folder / "tls")
    port = free_port()
    out = folder / "received.log"
    conf = write_rsyslog_conf(folder, port=port, out=out, cert=cert, key=key, tls=tls, template=FIELDS)
    proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(folder / "rsyslogd.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def listening() -> bool:
        assert proc.poll() is None, f"rsyslogd exited: {proc.stdout.read() if proc.stdout else b''!r}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        return False
    wait_for("rsyslogd listening", listening, timeout=15)
    url = f"syslog+tls://localhost:{port}?ca={cert}" if tls else f"syslog://127.0.0.1:{port}"
    try:
        yield url, out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize("rsyslog", [True, False], ids=["tls", "tcp"], indirect=True)
def test_rsyslog_gets_every_line_as_a_valid_rfc5424_message(
    sb: Stackblaze, tmp_path: Path, rsyslog: tuple[str, Path]
) -> None:
    url, received = rsyslog
    total = 100_000
    go = deploy_printer(sb, tmp_path, [total])
    added = sb.run("drains", "add", url, "--service", "printer", "--json").json()
    assert added["state"] == "ok" and added["behind"] == 0
    (go / "go1").touch()

    def lines() -> list[str]:
        return received.read_text().splitlines() if received.exists() else []
    got = wait_for("rsyslog to write every line", lambda: (found := lines()) and len(found) >= total and found,
                   timeout=90, interval=0.2)
    hostname = socket.gethostname()
    texts = []
    for line in got:
        match = PARSED.match(line)
        assert match, f"rsyslog did not parse an RFC 5424 header out of {line!r}"
        app, procid, pri, stamp, host, text = match.groups()
        assert (app, procid, pri, host) == ("printer", "printer.1", "14", hostname)
        assert RFC3339_MICROS.match(stamp), stamp
        texts.append(text)
    assert numbers(texts) == list(range(total))  # every line, in order, none twice
    assert texts[7] == "n=000007 the quick brown fox"
    state = drain_until(sb, added["id"], "the counters", lambda d: d["sent"] == total)
    assert (state["behind"], state["dropped"], state["retried"], state["state"]) == (0, 0, 0, "ok")
    assert sb.run("drains", "test", str(added["id"])).code == 0
    wait_for("the test message", lambda: "test message for drain" in received.read_text())


# -- HTTPS ----------------------------------------------------------------------------------------------


class HttpsReceiver:
    """A real HTTPS server on 127.0.0.1: answers 503 while `failing`, can go away (port closed) and return."""

    def __init__(self, folder: Path) -> None:
        self.cert, key = make_certificate(folder)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.cert, key)
        self.port = free_port()
        self.failing = False
        self.records: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.authorizations: set[str] = set()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.connections: list[socket.socket] = []

    def url(self, credentials: str = "drain:s3cr3t-t0ken") -> str:
        return f"https://{credentials}@localhost:{self.port}/logs?ca={self.cert}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with receiver.lock:
                    receiver.connections.append(self.connection)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.authorizations.add(self.headers.get("Authorization", ""))
                    status = 503 if receiver.failing else 200
                    if status == 200:
                        assert self.headers["Content-Encoding"] == "gzip"
                        batch = [json.loads(line) for line in gzip.decompress(body).splitlines()]
                        assert len(batch) == int(self.headers["X-Stackblaze-Lines"])
                        receiver.records.extend(batch)
                    receiver.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = self.context.wrap_socket(server.socket, server_side=True)
        self.server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Gone: the port is closed and open connections are cut."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.connections.clear()

    def numbers(self) -> list[int]:
        with self.lock:
            return numbers([r["line"] for r in self.records])


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[HttpsReceiver]:
    receiver = HttpsReceiver(tmp_path / "https")
    receiver.start()
    yield receiver
    receiver.stop()


def test_https_drain_survives_503_then_a_closed_port_and_delivers_everything(
    sb: Stackblaze, tmp_path: Path, https_receiver: HttpsReceiver
) -> None:
    receiver = https_receiver
    go = deploy_printer(sb, tmp_path, [5000, 5000, 5000])
    added = sb.run("drains", "add", receiver.url(), "--json").json()
    drain_id = added["id"]
    (go / "go1").touch()
    wait_for("the first 5000 lines", lambda: len(receiver.numbers()) >= 5000)

    receiver.failing = True  # 503 for a while
    (go / "go2").touch()
    failing = drain_until(sb, drain_id, "the drain to report the 503s", lambda d: d["state"] == "failing")
    assert "HTTP 503" in failing["last_error"]
    wait_for("a few retries", lambda: receiver.statuses.count(503) >= 3)
    drain_until(sb, drain_id, "5000 lines behind", lambda d: d["behind"] == 5000)

    receiver.stop()  # then it goes away
    refused = drain_until(sb, drain_id, "the drain to see the closed port", lambda d: "HTTP 503" not in d["last_error"])
    assert refused["state"] == "failing"
    (go / "go3").touch()
    drain_until(sb, drain_id, "10000 lines behind", lambda d: d["behind"] == 10000)

    receiver.failing = False
    receiver.start()  # and comes back on the same port
    wait_for("every line", lambda: set(receiver.numbers()) == set(range(15000)), timeout=60)
    got = receiver.numbers()
    assert sorted(set(got)) == list(range(15000))  # no gap; a retried batch is the only source of duplicates
    final = drain_until(sb, drain_id, "the counters", lambda d: d["behind"] == 0 and d["state"] == "ok")
    assert final["sent"] == 15000 and final["dropped"] == 0 and final["retried"] >= 5000
    assert final["last_error"] is None

    kinds = [e["kind"] for e in sb.events() if e["kind"].startswith("drain-")]
    assert kinds[:2] == ["drain-failed", "drain-recovered"] and "drain-dropped" not in kinds
    assert receiver.authorizations == {"Basic ZHJhaW46czNjcjN0LXQwa2Vu"}  # drain:s3cr3t-t0ken
    shown = [sb.run("drains", "list").out, sb.run("drains", "list", "--json").out, sb.run("events", "-n", "100").out,
             sb.run("events", "-n", "100", "--json").out, added["url"]]
    assert all("s3cr3t-t0ken" not in text for text in shown)
    assert "drain:••••••@localhost" in shown[0]


def test_daemon_killed_while_a_drain_is_behind_resumes_from_its_cursor(
    sb: Stackblaze, tmp_path: Path, https_receiver: HttpsReceiver
) -> None:
    receiver = https_receiver
    go = deploy_printer(sb, tmp_path, [20000, 20000])
    drain_id = sb.run("drains", "add", receiver.url(), "--json").json()["id"]
    (go / "go1").touch()
    wait_for("the first 20000 lines", lambda: len(receiver.numbers()) == 20000)
    receiver.failing = True
    (go / "go2").touch()
    drain_until(sb, drain_id, "20000 lines behind", lambda d: d["behind"] == 20000)

    daemon = psutil.Process(sb.daemon_pid())
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.wait(10)
    receiver.failing = False
    assert sb.run("drains", "list").code == 0  # starts a new daemon, which resumes the drain
    assert sb.daemon_pid() != daemon.pid
    wait_for("every line", lambda: set(receiver.numbers()) == set(range(40000)), timeout=60)
    got = receiver.numbers()
    assert sorted(got[:20000]) == list(range(20000))
    assert sorted(got[20000:]) == list(range(20000, 40000))  # resumed at the cursor: nothing re-sent from before
    final = drain_until(sb, drain_id, "the counters", lambda d: d["sent"] == 40000 and d["state"] == "ok")
    assert (final["behind"], final["dropped"], final["last_error"]) == (0, 0, None)
    kinds = [e["kind"] for e in sb.events() if e["kind"].startswith("drain-")]
    assert kinds == ["drain-failed", "drain-recovered"]  # the recovery is said by the new daemon
