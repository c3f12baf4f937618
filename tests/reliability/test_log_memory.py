"""`logs -n N` and `logs --grep` stream from the files: over a 1M-line log the daemon's memory does not grow
with N, the daemon keeps answering /v1/status meanwhile, and every line arrives in order."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.conftest import Stackblaze, wait_for, write_project

LINES = 1_000_000
SPEC = """\
project: loud
services:
  - name: worker
    start: python3 -u gen.py
    logs: {max_size: 1Gi, max_files: 2}
"""
GEN = f"""\
import sys, time
out = sys.stdout
for i in range({LINES}):
    out.write(f"line {{i:07d}} of a worker that talks a lot, about queues and jobs\\n")
out.flush()
time.sleep(1e6)
"""
MAX_GROWTH = 50 << 20  # the old code's list of a million records took 700 MB


def last_line(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 200))
        return handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]


class Watch:
    """Samples a daemon's RSS and how long /v1/status takes to answer, until stopped."""

    def __init__(self, sb: Stackblaze, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self.slowest_status = 0.0
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(sb.home / "api.sock")),
                                  base_url="http://stackblaze", timeout=30)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            started = time.monotonic()
            assert self._http.get("/v1/status").status_code == 200
            self.slowest_status = max(self.slowest_status, time.monotonic() - started)
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._http.close()
        return self.peak - self.before


def logs(sb: Stackblaze, *args: str) -> tuple[bytes, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "stackblaze.cli", "logs", *args], env=sb.env,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout, time.monotonic() - started


@pytest.mark.timeout(600)
def test_a_million_lines_stream_in_bounded_memory(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC, {"gen.py": GEN})))
    log = sb.home / "logs" / "loud" / "worker" / "1.log"
    wait_for("the worker's millionth line on disk", lambda: log.exists() and b"line 0999999 " in last_line(log),
             timeout=180, interval=0.5)
    pid = sb.daemon_pid()

    watch = Watch(sb, pid)
    out, took = logs(sb, "-n", str(LINES))
    growth = watch.stop()
    lines = out.splitlines()
    print(f"logs -n {LINES:,} over a {log.stat().st_size / 1e6:.0f} MB log: {len(lines):,} lines in {took:.1f}s; "
          f"daemon RSS +{growth / 1e6:.1f} MB (from {watch.before / 1e6:.0f} MB); "
          f"/v1/status answered within {watch.slowest_status * 1000:.0f} ms meanwhile")
    assert len(lines) == LINES
    assert lines[0].endswith(b"line 0000000 of a worker that talks a lot, about queues and jobs")
    assert lines[-1].endswith(b"line 0999999 of a worker that talks a lot, about queues and jobs")
    assert all(b"line %07d " % i in lines[i] for i in range(0, LINES, 99_991))
    assert growth < MAX_GROWTH
    assert watch.slowest_status < 2.0

    watch = Watch(sb, pid)
    out, took = logs(sb, "--grep", "7 of a worker", "-n", str(LINES))
    growth = watch.stop()
    lines = out.splitlines()
    print(f"logs --grep (100,000 of {LINES:,} lines match) -n {LINES:,}: {len(lines):,} lines in {took:.1f}s; "
          f"daemon RSS +{growth / 1e6:.1f} MB")
    assert len(lines) == LINES // 10 and all(b"7 of a worker" in line for line in lines)
    assert growth < MAX_GROWTH

    out, took = logs(sb, "--grep", "line 0000003 ", "-n", "5")
    print(f"logs --grep of the 4th line, -n 5: found in {took:.1f}s (read backwards through the whole log)")
    assert out.splitlines() == [b"worker.1 | line 0000003 of a worker that talks a lot, about queues and jobs"]
