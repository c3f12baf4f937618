#!/usr/bin/env python3
"""Log drain throughput: lines/s from replica log files to a local HTTPS receiver and to rsyslog.

    . .venv/bin/activate && pip install -e '.[test,bench]' && python bench/drains.py [--lines N] [--quick]

The replica log (CRI lines, 10 MiB files, as the runner writes them) is written first; then the drain
manager (the daemon's code: cursor, encoder in a worker thread, asyncio delivery, acknowledged batches,
cursors and counters saved after each in the daemon's SQLite store) ships it from the first line, and the
clock stops when the last batch is acknowledged and when the receiver has every line. Receivers run in
their own processes on 127.0.0.1: rsyslogd (TLS, gtls, and plain TCP; its own config, port and pid file;
writes what it parsed to a file) and a Python HTTPS server that decompresses and keeps every record.
Then every received line is checked: its identity (service, replica and the exact text written), its
order, and duplicates. A receiver that lost, altered, reordered or repeated a line gets no speed, and the
run exits 1. Also measured: building RFC 5424 messages alone, with our encoder and with
`rfc5424-logging-handler` (the library we did not use: see logs/drains/syslog.py).
Goal: >= 100,000 lines/s. Results: bench/results/drains-*.json (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import itertools
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.tls: the self-signed certificate helper

from tests.rsyslog import write_rsyslog_conf  # noqa: E402
from tests.tls import make_certificate  # noqa: E402

from stackblaze.engine.local.logwriter import LineSplitter, LogFile  # noqa: E402
from stackblaze.logs.drains.cursor import Chunk  # noqa: E402
from stackblaze.logs.drains.manager import DrainConfig, DrainManager  # noqa: E402
from stackblaze.logs.drains.syslog import encode_frames  # noqa: E402
from stackblaze.state.drains import DrainStore  # noqa: E402
from stackblaze.state.secrets import SecretBox  # noqa: E402
from stackblaze.state.store import Store  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
DEADLINE = 300.0

SERVICE, REPLICA = "worker", 1
NUMBERED = re.compile(r"n=(\d{9}) ")
# What the HTTPS receiver keeps of a record, and the rsyslog template: the line's identity and its text.
SYSLOG_TEMPLATE = "%APP-NAME% %PROCID% %msg%\\n"

RECEIVER = textwrap.dedent("""
    import gzip, ssl, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    port, cert, key, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], open(sys.argv[4], "ab")
    count = 0
    lock = threading.Lock()
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            global count
            body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:  # kept in the order the batches were acknowledged
                out.write(body)
                out.flush()
                count += body.count(b"\\n")
            self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
        def do_GET(self):
            data = str(count).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
            self.wfile.write(data)
        def log_message(self, *args):
            pass
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def process(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def text_of(number: int) -> str:
    """Line `number` of the replica log, as the worker wrote it."""
    return f"n={number:09d} processed job {number * 7919 % 100000:05d} for queue emails"


def write_log(logs: Path, lines: int) -> int:
    """The replica log as the runner writes it; 10 MiB files, all kept (the drain starts at the first)."""
    folder = logs / "bench" / SERVICE
    log = LogFile(str(folder / f"{REPLICA}.log"), max_bytes=10 << 20, max_files=10_000)
    splitter = LineSplitter("stdout")
    step = 10_000
    for start in range(0, lines, step):
        text = "".join(text_of(i) + "\n" for i in range(start, min(start + step, lines)))
        log.write(splitter.feed(text.encode()))
    log.close()
    return sum(path.stat().st_size for path in folder.iterdir())


def verify(received: list[tuple[str, str]], lines: int) -> dict[str, int]:
    """Every received (replica, text) against what was written: lines missing, altered (another replica's,
    or another text), repeated, and out of order (a line that arrived after a later one)."""
    numbers: list[int] = []
    altered = 0
    for replica, text in received:
        found = NUMBERED.match(text)
        number = int(found.group(1)) if found else -1
        if replica != f"{SERVICE}.{REPLICA}" or not 0 <= number < lines or text != text_of(number):
            altered += 1
            continue
        numbers.append(number)
    distinct = set(numbers)
    out_of_order = sum(1 for before, after in itertools.pairwise(numbers) if after < before)
    return {"received": len(received), "lost": lines - len(distinct), "altered": altered,
            "duplicated": len(numbers) - len(distinct), "out_of_order": out_of_order}


def received_https(path: Path) -> list[tuple[str, str]]:
    """(replica, text) of each NDJSON record the receiver kept."""
    out = []
    with open(path, "rb") as handle:
        for raw in handle:
            record = json.loads(raw)
            out.append((f"{record.get('service')}.{record.get('replica')}", str(record.get("line"))))
    return out


def received_syslog(path: Path) -> list[tuple[str, str]]:
    """(replica, text) of each message as rsyslog parsed it (SYSLOG_TEMPLATE): PROCID is the replica
    (`worker.1`), and APP-NAME must be its service."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            app, procid, text = [*raw.rstrip("\n").split(" ", 2), "", ""][:3]
            out.append((procid if procid.rpartition(".")[0] == app else f"{app} {procid}", text))
    return out


async def run_drain(folder: Path, url: str, lines: int, received: Callable[[], int]) -> dict[str, float]:
    """Ship the log through the daemon's drain manager, with its cursors and counters in the daemon's SQLite
    store (a fresh one per receiver), until the receiver has as many lines as were written."""
    work = Path(tempfile.mkdtemp(prefix="drain-", dir=folder))
    store = Store(work / "state.db", SecretBox(work / "secret.key"))
    table = DrainStore(store)
    row = table.add(project="bench", service=None, url=url)
    manager = DrainManager(logs_dir=folder / "logs", holds_dir=work / "holds", store=table,
                           record_event=lambda **fields: print("  event:", fields["message"]))

    def acknowledged() -> int:
        found = table.get(row.id)
        return found.sent if found else 0

    started = time.perf_counter()
    await manager.start(DrainConfig(id=row.id, project=row.project, service=row.service, url=row.url))
    acked = None
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            if acked is None and acknowledged() >= lines:
                acked = time.perf_counter() - started
            if acked is not None and await asyncio.to_thread(received) >= lines:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"timed out: {acknowledged()} acknowledged, {received()} received")
        arrived = time.perf_counter() - started
    finally:
        await manager.close()
    assert acked is not None
    return {"acked_s": acked, "received_s": arrived, "lines_per_s": lines / arrived,
            "acked_lines_per_s": lines / acked}


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def bench_rsyslog(folder: Path, lines: int, cert: Path, key: Path, *, tls: bool) -> dict[str, float]:
    work = folder / ("rsyslog-tls" if tls else "rsyslog-tcp")
    work.mkdir()
    port = free_port()
    out = work / "received.log"
    conf = write_rsyslog_conf(work, port=port, out=out, cert=cert, key=key, tls=tls, template=SYSLOG_TEMPLATE,
                              action_options='ioBufferSize="1m" asyncWriting="on" flushInterval="1"')
    with process([RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")]) as proc:
        wait_port(port, proc)
        url = f"syslog+tls://localhost:{port}?ca={cert}" if tls else f"syslog://127.0.0.1:{port}"
        figures = asyncio.run(run_drain(folder, url, lines, lambda: count_lines(out)))
    return {**figures, **verify(received_syslog(out), lines)}


def bench_https(folder: Path, lines: int, cert: Path, key: Path) -> dict[str, float]:
    import httpx

    port = free_port()
    out = folder / "https-received.ndjson"
    with process([sys.executable, "-c", RECEIVER, str(port), str(cert), str(key), str(out)]) as proc:
        wait_port(port, proc)
        with httpx.Client(verify=str(cert)) as http:
            def received() -> int:
                return int(http.get(f"https://localhost:{port}/").text)
            figures = asyncio.run(run_drain(folder, f"https://u:token@localhost:{port}/drain?ca={cert}", lines,
                                            received))
    return {**figures, **verify(received_https(out), lines)}


def bench_encoders(count: int = 200_000) -> dict[str, float]:
    data = b"".join(b"2026-11-30T13:52:46.123456Z stdout F n=%09d processed job 12345 for queue emails\n" % i
                    for i in range(count))
    chunk = Chunk("worker", 1, 1, 0, data, count)
    started = time.perf_counter()
    encode_frames([chunk], hostname="bench-host")
    ours = count / (time.perf_counter() - started)
    result = {"ours_msgs_per_s": ours}
    try:  # untyped, and only in the bench extras: looked up by name
        handler_class = importlib.import_module("rfc5424logging").Rfc5424SysLogHandler
    except ImportError:
        return result
    handler = handler_class(address=("127.0.0.1", 9), hostname="bench-host", appname="worker",
                                   procid="worker.1", utc_timestamp=True)
    records = [logging.LogRecord("w", logging.INFO, "f", 1, f"n={i:09d} processed job 12345 for queue emails",
                                 None, None) for i in range(count // 4)]
    started = time.perf_counter()
    for record in records:
        message = handler.build_msg(record)
        b"%d %s" % (len(message), message)
    result["rfc5424_logging_handler_msgs_per_s"] = len(records) / (time.perf_counter() - started)
    handler.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 lines")
    parser.add_argument("--only", default="https,rsyslog-tls,rsyslog-tcp,encoders")
    args = parser.parse_args()
    if args.quick:
        args.lines = 100_000
    wanted = set(args.only.split(","))
    failed: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="sb-bench-drains-"))
    results: dict[str, Any] = {"lines": args.lines, "machine": platform.platform(), "cpus": os.cpu_count()}
    try:
        cert, key = make_certificate(folder / "tls")
        size = write_log(folder / "logs", args.lines)
        print(f"{args.lines:,} lines, {size / (1 << 20):.0f} MiB of CRI log in {folder}")
        if "encoders" in wanted:
            results["encoders"] = bench_encoders()
            print("RFC 5424 building alone: " + ", ".join(f"{k} {v:,.0f}" for k, v in results["encoders"].items()))
        jobs: dict[str, Callable[[], dict[str, float]]] = {"https": lambda: bench_https(folder, args.lines, cert, key),
                "rsyslog-tls": lambda: bench_rsyslog(folder, args.lines, cert, key, tls=True),
                "rsyslog-tcp": lambda: bench_rsyslog(folder, args.lines, cert, key, tls=False)}
        for name, job in jobs.items():
            if name not in wanted:
                continue
            if name.startswith("rsyslog") and not os.path.exists(RSYSLOGD):
                print(f"{name}: skipped (apt-get install -y rsyslog rsyslog-gnutls)")
                continue
            figures = job()
            results[name] = figures
            wrong = {count: figures[count] for count in ("lost", "altered", "duplicated", "out_of_order")
                     if figures[count]}
            if wrong:
                failed.append(name)
                for speed in ("lines_per_s", "acked_lines_per_s", "acked_s", "received_s"):
                    del figures[speed]  # a speed is only a speed when every line arrived, once, as written
                counts = ", ".join(f"{count.replace('_', ' ')} {value:,.0f}" for count, value in wrong.items())
                print(f"{name:12s} FAILED: {counts} of {args.lines:,} lines; no speed reported")
                continue
            verdict = "ok" if figures["lines_per_s"] >= 100_000 else "BELOW the 100,000 lines/s goal"
            print(f"{name:12s} {figures['lines_per_s']:>10,.0f} lines/s received "
                  f"({figures['acked_lines_per_s']:,.0f} acknowledged; {figures['received_s']:.2f} s), every line "
                  f"once and in order  {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / time.strftime("drains-%Y%m%d-%H%M%S.json")
    results["failed"] = failed
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
