#!/usr/bin/env python3
"""Log drain throughput: lines/s from replica log files to a local HTTPS receiver and to rsyslog.

    . .venv/bin/activate && pip install -e '.[test,bench]' && python bench/drains.py [--lines N]

The replica log (CRI lines, 10 MiB files, as the runner writes them) is written first; then the drain
manager (the daemon's code: cursor, encoder in a worker thread, asyncio delivery, acknowledged batches,
cursor saved after each) ships it from the first line, and the clock stops when the last batch is
acknowledged and when the receiver has every line. Receivers run in their own processes on 127.0.0.1:
rsyslogd (TLS, gtls, and plain TCP; its own config, port and pid file; writes what it parsed to a file)
and a Python HTTPS server that decompresses and counts. Also measured: building RFC 5424 messages alone,
with our encoder and with `rfc5424-logging-handler` (the library we did not use: see logs/drains/syslog.py).
Goal: >= 100,000 lines/s. Results: bench/results/drains-*.json (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.tls: the self-signed certificate helper

from tests.rsyslog import write_rsyslog_conf  # noqa: E402
from tests.tls import make_certificate  # noqa: E402

from stackblaze.engine.local.logwriter import LineSplitter, LogFile  # noqa: E402
from stackblaze.logs.drains.cursor import Chunk  # noqa: E402
from stackblaze.logs.drains.fake import MemoryCursorStore  # noqa: E402
from stackblaze.logs.drains.manager import DrainConfig, DrainManager  # noqa: E402
from stackblaze.logs.drains.syslog import encode_frames  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
DEADLINE = 300.0

RECEIVER = textwrap.dedent("""
    import gzip, ssl, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    count = 0
    lock = threading.Lock()
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            global count
            body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
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


def write_log(logs: Path, lines: int) -> int:
    """The replica log as the runner writes it; 10 MiB files, all kept (the drain starts at the first)."""
    log = LogFile(str(logs / "bench" / "worker" / "1.log"), max_bytes=10 << 20, max_files=10_000)
    splitter = LineSplitter("stdout")
    step = 10_000
    for start in range(0, lines, step):
        text = "".join(f"n={i:09d} processed job {i * 7919 % 100000:05d} for queue emails\n"
                       for i in range(start, min(start + step, lines)))
        log.write(splitter.feed(text.encode()))
    log.close()
    return sum(path.stat().st_size for path in (logs / "bench" / "worker").iterdir())


async def run_drain(folder: Path, url: str, lines: int, received: Any) -> dict[str, float]:
    store = MemoryCursorStore()
    manager = DrainManager(logs_dir=folder / "logs", holds_dir=folder / f"holds-{time.monotonic_ns()}", store=store,
                           record_event=lambda **fields: print("  event:", fields["message"]))
    started = time.perf_counter()
    await manager.start(DrainConfig(id=1, project="bench", service=None, url=url))
    acked = None
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if acked is None and store.counters.get(1, {}).get("sent", 0) >= lines:
            acked = time.perf_counter() - started
        if acked is not None and await asyncio.to_thread(received) >= lines:
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError(f"timed out: {store.counters.get(1)} acknowledged, {received()} received")
    arrived = time.perf_counter() - started
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
    conf = write_rsyslog_conf(work, port=port, out=out, cert=cert, key=key, tls=tls,
                              template="%APP-NAME% %PROCID% %msg%\\n",
                              action_options='ioBufferSize="1m" asyncWriting="on" flushInterval="1"')
    with process([RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")]) as proc:
        wait_port(port, proc)
        url = f"syslog+tls://localhost:{port}?ca={cert}" if tls else f"syslog://127.0.0.1:{port}"
        return asyncio.run(run_drain(folder, url, lines, lambda: count_lines(out)))


def bench_https(folder: Path, lines: int, cert: Path, key: Path) -> dict[str, float]:
    import httpx

    port = free_port()
    with process([sys.executable, "-c", RECEIVER, str(port), str(cert), str(key)]) as proc:
        wait_port(port, proc)
        with httpx.Client(verify=str(cert)) as http:
            def received() -> int:
                return int(http.get(f"https://localhost:{port}/").text)
            return asyncio.run(run_drain(folder, f"https://u:token@localhost:{port}/drain?ca={cert}", lines,
                                         received))


def bench_encoders(count: int = 200_000) -> dict[str, float]:
    data = b"".join(b"2026-11-30T13:52:46.123456Z stdout F n=%09d processed job 12345 for queue emails\n" % i
                    for i in range(count))
    chunk = Chunk("worker", 1, 1, 0, data, count)
    started = time.perf_counter()
    encode_frames([chunk], hostname="bench-host")
    ours = count / (time.perf_counter() - started)
    result = {"ours_msgs_per_s": ours}
    try:
        from rfc5424logging import Rfc5424SysLogHandler  # type: ignore[import-not-found]
    except ImportError:
        return result
    handler = Rfc5424SysLogHandler(address=("127.0.0.1", 9), hostname="bench-host", appname="worker",
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
    parser.add_argument("--only", default="https,rsyslog-tls,rsyslog-tcp,encoders")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    folder = Path(tempfile.mkdtemp(prefix="sb-bench-drains-"))
    results: dict[str, Any] = {"lines": args.lines, "machine": platform.platform(), "cpus": os.cpu_count()}
    try:
        cert, key = make_certificate(folder / "tls")
        size = write_log(folder / "logs", args.lines)
        print(f"{args.lines:,} lines, {size / (1 << 20):.0f} MiB of CRI log in {folder}")
        if "encoders" in wanted:
            results["encoders"] = bench_encoders()
            print("RFC 5424 building alone: " + ", ".join(f"{k} {v:,.0f}" for k, v in results["encoders"].items()))
        jobs = {"https": lambda: bench_https(folder, args.lines, cert, key),
                "rsyslog-tls": lambda: bench_rsyslog(folder, args.lines, cert, key, tls=True),
                "rsyslog-tcp": lambda: bench_rsyslog(folder, args.lines, cert, key, tls=False)}
        for name, job in jobs.items():
            if name not in wanted:
                continue
            if name.startswith("rsyslog") and not os.path.exists(RSYSLOGD):
                print(f"{name}: skipped (apt-get install -y rsyslog rsyslog-gnutls)")
                continue
            figures = results[name] = job()
            verdict = "ok" if figures["lines_per_s"] >= 100_000 else "BELOW the 100,000 lines/s goal"
            print(f"{name:12s} {figures['lines_per_s']:>10,.0f} lines/s received "
                  f"({figures['acked_lines_per_s']:,.0f} acknowledged; {figures['received_s']:.2f} s)  {verdict}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / time.strftime("drains-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
