"""bench/compare.py's measurements: children (RSS, idle CPU, time to N), log capture and its baselines, and
the check that every captured line is there, once and in order."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from compare_peers import Peer, Program, Stackblaze
from compare_procs import TRACKER, cpu, cpu_ns, live_children, rss, wait_for, wait_gone

CHILD = ["sleep", "100000"]
LINE_BYTES = 100
NUMBER = re.compile(rb"L(\d{10}) ")
START_DEADLINE = 180.0
LOG_DEADLINE = 300.0


PRODUCER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#define LINE 100
#define PER_BLOCK 10000
static char block[LINE * PER_BLOCK];
/* produce N STARTFILE [exit]: N numbered 100-byte lines to stdout as fast as possible, then pause */
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[1]);
    int stay = !(argc > 3 && strcmp(argv[3], "exit") == 0);
    for (int i = 0; i < PER_BLOCK; i++) {
        char *l = block + (long)i * LINE;
        memset(l, 'x', LINE);
        l[0] = 'L'; l[11] = ' '; l[LINE - 1] = '\n';
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *f = fopen(tmp, "w");
    if (!f) return 3;
    fprintf(f, "%ld.%09ld\n", (long)ts.tv_sec, ts.tv_nsec);
    fclose(f);
    rename(tmp, argv[2]);
    for (long i = 0; i < n; ) {
        long k = n - i < PER_BLOCK ? n - i : PER_BLOCK;
        for (long j = 0; j < k; j++) {
            long v = i + j;
            char *p = block + j * LINE + 1;
            for (int c = 9; c >= 0; c--) { p[c] = (char)('0' + v % 10); v /= 10; }
        }
        char *p = block;
        size_t len = (size_t)k * LINE;
        while (len) {
            ssize_t w = write(1, p, len);
            if (w < 0) { if (errno == EINTR) continue; return 1; }
            p += w; len -= (size_t)w;
        }
        i += k;
    }
    if (stay) for (;;) pause();
    return 0;
}
"""

PRODUCER_PY = r"""
import os, signal, sys, time
n, start_file = int(sys.argv[1]), sys.argv[2]
stay = not (len(sys.argv) > 3 and sys.argv[3] == "exit")
per = 10000
blocks = [b"".join(b"L%010d %s\n" % (i, b"x" * 87) for i in range(s, min(n, s + per))) for s in range(0, n, per)]
now = time.time()
with open(start_file + ".tmp", "w") as f:
    f.write(f"{now:.9f}\n")
os.rename(start_file + ".tmp", start_file)
out = sys.stdout.buffer
for block in blocks:
    out.write(block)
out.flush()
if stay:
    while True:
        signal.pause()
"""


def build_producer(work: Path) -> tuple[list[str], str]:
    """The fastest producer we can make here: C if a compiler is there, else Python with pre-built blocks."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc:
        src = work / "produce.c"
        src.write_text(PRODUCER_C)
        exe = work / "produce"
        result = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True, text=True)
        if result.returncode == 0:
            return [str(exe)], f"C ({Path(cc).name} -O2)"
        print(f"  (C producer did not build, using Python: {result.stderr.strip()[:200]})")
    script = work / "produce.py"
    script.write_text(PRODUCER_PY)
    return [shutil.which("python3") or sys.executable, str(script)], "Python (pre-built blocks)"



@contextlib.contextmanager
def running(peer: Peer, program: Program, keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix=f"sb-bench-{peer.name}-"))
    try:
        peer.start(work, program)
        yield work
    except Exception:
        with contextlib.suppress(Exception):
            print(textwrap.indent(peer.diagnostics(work) or "(no logs)", "    | "))
        raise
    finally:
        pids: list[int] = []
        with contextlib.suppress(Exception):
            pids = [*peer.supervisor_pids()]
            for pid in pids:
                TRACKER.add_tree(pid)
        try:
            peer.stop()
        except Exception as exc:
            print(f"  ({peer.name}: graceful stop failed: {exc}; killing)")
        if pids and not wait_gone(pids, 30):
            print(f"  ({peer.name}: still running after stop; killing)")
        TRACKER.kill_all()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def measure_children(peer: Peer, n: int, cpu_window: float | None, settle: float, keep: bool,
                     scale_too: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with running(peer, Program("w", CHILD, n), keep):
        parent = peer.parent_pid()
        t0 = time.perf_counter()
        cli = peer.request()
        count = 0
        while True:
            count = len(live_children(parent))
            if count >= n:
                result["start_s"] = time.perf_counter() - t0
                break
            if time.perf_counter() - t0 > START_DEADLINE:
                raise RuntimeError(f"{peer.name}: only {count}/{n} children after {START_DEADLINE:.0f}s")
            time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            cli.wait(120)
        result["cli_exit_s"] = time.perf_counter() - t0
        for kid in live_children(parent):
            TRACKER.add(kid.pid)
        time.sleep(settle)  # let the start-up work settle
        pids = peer.supervisor_pids()
        result["rss"] = rss(pids)
        result["rss_each"] = [psutil.Process(pid).memory_info().rss for pid in pids]
        result["children"] = len(live_children(parent))
        if cpu_window:
            before, before_ns, t = cpu(pids), cpu_ns(pids), time.perf_counter()
            time.sleep(cpu_window)
            used, used_ns, elapsed = cpu(pids) - before, cpu_ns(pids), time.perf_counter() - t
            result["cpu_idle_s"] = used * 30.0 / elapsed  # per 30 s
            if used_ns is not None and before_ns is not None:
                result["cpu_idle_sched_s"] = (used_ns - before_ns) / 1e9 * 30.0 / elapsed
            result["cpu_window_s"] = elapsed
            result["children_after_cpu"] = len(live_children(parent))
        if scale_too and isinstance(peer, Stackblaze):
            # The same count through `stackblaze scale 0 -> N`: the engine without the deploy's build step.
            peer.scale(0).wait(120)
            wait_for("all replicas to stop", lambda: not live_children(parent), 60)
            t0 = time.perf_counter()
            cli = peer.scale(n)
            wait_for(f"{n} replicas after scale", lambda: len(live_children(parent)) >= n, START_DEADLINE, 0.02)
            result["start_scale_s"] = time.perf_counter() - t0
            for kid in live_children(parent):
                TRACKER.add(kid.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                cli.wait(120)
    return result


def newest_has_last(files: list[Path], n: int) -> bool:
    """The last line is at the end of the newest non-empty file (a rotation may just have emptied one)."""
    last = b"L%010d " % (n - 1)
    for path in reversed(files):
        size = path.stat().st_size if path.exists() else 0
        if size == 0:
            continue
        with open(path, "rb") as f:
            f.seek(max(0, size - 4 * LINE_BYTES - 200))
            tail = f.read()
        return last in tail and tail.endswith(b"\n")
    return False


def verify(files: list[Path], n: int, *, rotates: bool = False) -> dict[str, Any]:
    """Read every captured line back: how many of the n numbered lines are there, repeated, in order.

    For a peer that `rotates` (keeps only its newest files, by design), the lines before the first one kept
    are `rotated` away, not lost: what was kept must still be every line from there to the last, once."""
    numbers: list[int] = []
    lines = size = 0
    for path in files:
        data = path.read_bytes()
        size += len(data)
        lines += data.count(b"\n")
        numbers.extend(map(int, NUMBER.findall(data)))
        del data
    out: dict[str, Any] = {"files": len(files), "bytes": size, "lines": lines, "numbered": len(numbers)}
    if not numbers:
        out.update(first=None, last=None, in_order=False, lost=n, duplicated=0, rotated=0)
        return out
    first, last = numbers[0], numbers[-1]
    in_order = numbers == list(range(first, first + len(numbers)))
    distinct = len(numbers) if in_order else len(set(numbers))
    rotated = min(numbers) if rotates else 0
    out.update(first=first, last=last, in_order=in_order, lost=n - rotated - distinct,
               duplicated=len(numbers) - distinct, rotated=rotated,
               bytes_per_line=round(size / lines, 1) if lines else None)
    return out


def correct(result: dict[str, Any]) -> bool:
    """A log run captured every line (but those rotated away by design), once and in order."""
    return "error" not in result and result.get("lost") == 0 and result.get("duplicated") == 0 \
        and bool(result.get("in_order"))


def withhold_speed(result: dict[str, Any]) -> dict[str, Any]:
    """A run that lost a line has no speed: what it measured is not the job the others did."""
    if not correct(result):
        result["lines_per_s"] = None
        result["seconds"] = None
    return result


def measure_log(peer: Peer, producer: list[str], n: int, keep: bool, profile: bool) -> dict[str, Any]:
    work_start = Path(tempfile.mkdtemp(prefix="sb-bench-start-"))
    start_file = work_start / "start"
    try:
        with running(peer, Program("log", [*producer, str(n), str(start_file)], 1), keep):
            pids = peer.supervisor_pids()
            cpu_before = cpu_ns(pids)
            cli = peer.request()
            started = float(wait_for("the producer to start", lambda: start_file.read_text().strip(), 60, 0.01))
            if profile and isinstance(peer, Stackblaze):
                dump = subprocess.run(["py-spy", "dump", "--pid", str(peer.parent_pid())],
                                      capture_output=True, text=True)
                print(textwrap.indent(dump.stdout or dump.stderr, "    | "))
            deadline = time.monotonic() + LOG_DEADLINE
            complete = True
            while not newest_has_last(peer.log_files(), n):
                if time.monotonic() > deadline:
                    complete = False
                    break
                time.sleep(0.01)
            for kid in psutil.Process(peer.parent_pid()).children(recursive=True):
                TRACKER.add(kid.pid)
            # until nothing grows any more, then the end is the last write (the newest mtime)
            sizes: list[int] = []
            for _ in range(200):
                now = [p.stat().st_size for p in peer.log_files() if p.exists()]
                if now == sizes:
                    break
                sizes = now
                time.sleep(0.3)
            cpu_after = cpu_ns(pids)
            files = [p for p in peer.log_files() if p.exists()]
            end = max(p.stat().st_mtime_ns for p in files) / 1e9
            with contextlib.suppress(subprocess.TimeoutExpired):
                cli.wait(60)
            result: dict[str, Any] = {"complete": complete, "seconds": end - started}
            result["lines_per_s"] = n / (end - started) if complete else None
            if cpu_before is not None and cpu_after is not None:
                # includes the client request and ~0.3 s of idle after the last line
                result["supervisor_cpu_s"] = (cpu_after - cpu_before) / 1e9
            result.update(verify(files, n, rotates=peer.rotates))
            return withhold_speed(result)
    finally:
        shutil.rmtree(work_start, ignore_errors=True)


def measure_baseline(kind: str, producer: list[str], n: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sb-bench-base-"))
    try:
        start_file, out = work / "start", work / "out.log"
        argv = [*producer, str(n), str(start_file), "exit"]
        if kind == "direct":
            with open(out, "wb") as f:
                proc = subprocess.Popen(argv, stdout=f)
                TRACKER.add(proc.pid)
                proc.wait(300)
        else:
            with open(out, "wb") as f:
                prod = subprocess.Popen(argv, stdout=subprocess.PIPE)
                cat = subprocess.Popen(["cat"], stdin=prod.stdout, stdout=f)
                TRACKER.add(prod.pid)
                TRACKER.add(cat.pid)
                assert prod.stdout is not None
                prod.stdout.close()
                prod.wait(300)
                cat.wait(300)
        started = float(start_file.read_text())
        end = out.stat().st_mtime_ns / 1e9
        result: dict[str, Any] = {"complete": True, "seconds": end - started, "lines_per_s": n / (end - started)}
        result.update(verify([out], n))
        return withhold_speed(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
