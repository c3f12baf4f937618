#!/usr/bin/env python3
"""stackblaze vs supervisord, circus and PM2, side by side in one run.

    . .venv/bin/activate && pip install -e '.[bench]' && python bench/compare.py [--quick]

Each peer supervises the same children (`sleep 100000`, and a C log producer) on this machine only.
Measured (median of --runs runs, default 3):

  rss100 / rss300   RSS of the supervisor's own processes with 100 / 300 idle children running
                    (stackblaze: daemon + runner; supervisord; circusd; PM2's God daemon)
  cpu_idle          user+sys CPU seconds of those processes over 30 s idle with 100 children
  start100/start300 seconds from the client command (on an already running, idle supervisor) until
                    that many children are alive (counted with psutil); for stackblaze also through
                    `stackblaze scale 0 -> N` (the engine without the deploy's build step)
  log               lines/s from the producer's first write until its 2,000,000th line is in the log
                    file(s), and how many lines are missing
Baselines: the producer writing straight to a file, and through `cat` to a file.

See bench/README.md. Results go to bench/results/compare-*.json (gitignored).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
NODE_DIR = Path(os.environ.get("SB_BENCH_NODE_DIR", "/tmp/sb-bench-node"))
PM2_VERSION = os.environ.get("SB_BENCH_PM2_VERSION", "7.0.4")
CHILD = ["sleep", "100000"]
CHILD_NAME = "sleep"
LINE_BYTES = 100
NUMBER = re.compile(rb"L(\d{10}) ")
START_DEADLINE = 180.0
LOG_DEADLINE = 300.0


# -- processes we started: killed at the end whatever happens --------------------------------------


class Tracker:
    """Every PID this run started (directly or as a supervisor's child), with its start time."""

    def __init__(self) -> None:
        self.procs: dict[int, float] = {}

    def add(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            self.procs.setdefault(pid, psutil.Process(pid).create_time())

    def add_tree(self, pid: int) -> None:
        self.add(pid)
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                self.add(child.pid)

    def alive(self, pids: list[int]) -> list[psutil.Process]:
        out = []
        for pid in pids:
            created = self.procs.get(pid)
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if created is not None and proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
        return out

    def kill(self, pids: list[int]) -> None:
        for proc in self.alive(pids):
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def kill_all(self) -> None:
        self.kill(list(self.procs))


TRACKER = Tracker()


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not TRACKER.alive(pids):
            return True
        time.sleep(0.05)
    return False


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120.0,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    TRACKER.add(proc.pid)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{' '.join(argv)} timed out after {timeout}s: {err[-500:]}") from None
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {(err or out)[-800:]}")
    return result


def spawn(argv: list[str], *, env: dict[str, str] | None = None, log: Path | None = None,
          new_session: bool = False) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=new_session)
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    TRACKER.add(proc.pid)
    return proc


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def live_children(pid: int) -> list[psutil.Process]:
    """Live (not zombie) descendants of pid running CHILD_NAME."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            if kid.name() == CHILD_NAME and kid.status() != psutil.STATUS_ZOMBIE:
                out.append(kid)
    return out


def rss(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def cpu(pids: list[int]) -> float:
    """user+sys seconds (psutil; the kernel counts these in clock ticks, 10 ms here)."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def cpu_ns(pids: list[int]) -> int | None:
    """Time on CPU in ns from /proc/PID/task/*/schedstat: the same thing as cpu(), without the 10 ms ticks."""
    total = 0
    try:
        for pid in pids:
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return None
    return total


# -- the programs the peers run -----------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """What a peer is set up to run: `count` copies of argv, under the name `name`."""

    name: str
    argv: list[str]
    count: int


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


# -- peers ----------------------------------------------------------------------------------------


class Peer:
    name = "?"
    version = "?"
    timestamps = False  # does it stamp each captured line?

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or None."""
        return None

    def start(self, work: Path, program: Program) -> None:
        """Start the supervisor, idle, set up to run `program` when asked."""
        raise NotImplementedError

    def request(self) -> subprocess.Popen[bytes]:
        """Ask the running supervisor to start the program (the client command, not waited for)."""
        raise NotImplementedError

    def supervisor_pids(self) -> list[int]:
        raise NotImplementedError

    def parent_pid(self) -> int:
        """The process whose descendants are the workers."""
        return self.supervisor_pids()[0]

    def log_files(self) -> list[Path]:
        """The program's captured stdout, oldest file first."""
        raise NotImplementedError

    def stop(self) -> None:
        """Graceful stop of the supervisor and every child; the caller kills what is left."""
        raise NotImplementedError

    def diagnostics(self, work: Path) -> str:
        """The tails of the small logs in the work dir: what the client and the supervisor said."""
        parts = []
        for path in sorted(work.rglob("*")):
            if path.is_file() and path.suffix in (".out", ".log") and path.stat().st_size < 5_000_000 \
                    and "/logs/" not in str(path) and not path.name.startswith("log."):
                lines = path.read_text(errors="replace").splitlines()[-15:]
                if lines:
                    parts.append(f"== {path.relative_to(work)}\n" + "\n".join(lines))
        return "\n".join(parts)


class Stackblaze(Peer):
    name = "stackblaze"
    timestamps = True

    def __init__(self, *, log_max_bytes: int | None = None, label: str | None = None) -> None:
        self.log_max_bytes = log_max_bytes
        if label:
            self.name = label
        try:
            from importlib.metadata import version
            self.version = version("stackblaze")
        except Exception:
            self.version = "?"
        self.pids: list[int] = []

    def _env(self) -> dict[str, str]:
        return {**os.environ, "STACKBLAZE_HOME": str(self.home)}

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.home = work / "home"
        self.program = program
        self.app = work / "app"
        self.app.mkdir(parents=True)
        logs = f"    logs: {{max_size: {self.log_max_bytes}}}\n" if self.log_max_bytes is not None else ""
        (self.app / "stackblaze.yaml").write_text(
            f"project: p\nservices:\n  - name: {program.name}\n    start: {' '.join(program.argv)}\n"
            f"    replicas: {program.count}\n    shutdown_grace: 5s\n{logs}"
        )
        run([str(BIN / "stackblaze"), "daemon", "start"], env=self._env(), timeout=60)
        def status() -> dict[str, Any] | None:
            out = run([str(BIN / "stackblaze"), "daemon", "status", "--json"], env=self._env(), check=False)
            data = json.loads(out.stdout)
            return data if data.get("pid") else None

        daemon = int(wait_for("the stackblaze daemon", status, 60)["pid"])
        TRACKER.add(daemon)
        sock = str(self.home / "run" / "runner.sock")

        def runner() -> int | None:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmd = proc.info["cmdline"] or []
                if "stackblaze.engine.local.runner" in cmd and sock in cmd:
                    return int(proc.info["pid"])
            return None

        self.pids = [daemon, wait_for("the stackblaze runner", runner, 30)]
        TRACKER.add(self.pids[1])

    def request(self) -> subprocess.Popen[bytes]:
        return spawn([str(BIN / "stackblaze"), "deploy", str(self.app), "--json"], env=self._env(),
                     log=self.work / "request.out")

    def scale(self, n: int) -> subprocess.Popen[bytes]:
        """`stackblaze scale` on the deployed service: the engine alone, without the deploy's build step."""
        return spawn([str(BIN / "stackblaze"), "scale", self.program.name, "--replicas", str(n)], env=self._env(),
                     log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return self.pids

    def parent_pid(self) -> int:
        return self.pids[1]

    def log_files(self) -> list[Path]:
        base = self.home / "logs" / "p" / self.program.name / "1.log"
        rotated = sorted(base.parent.glob("1.log.*"), key=lambda p: -int(p.suffix[1:]))
        return [*rotated, base]

    def stop(self) -> None:
        for pid in self.pids:
            TRACKER.add_tree(pid)
        run([str(BIN / "stackblaze"), "daemon", "stop", "--all"], env=self._env(), timeout=120, check=False)


class Supervisord(Peer):
    name = "supervisord"

    def unavailable(self) -> str | None:
        try:
            from importlib.metadata import version
            self.version = version("supervisor")
        except Exception:
            return "supervisor is not installed (pip install supervisor==4.3.0)"
        if not (BIN / "supervisord").exists():
            return f"no supervisord in {BIN}"
        return None

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.program = program
        self.conf = work / "supervisord.conf"
        (work / "childlogs").mkdir()
        name = program.name
        if program.count > 1:
            logs = "process_name=%(program_name)s_%(process_num)d\n"
        else:
            logs = (f"stdout_logfile={work}/{name}.out.log\nstdout_logfile_maxbytes=0\n"
                    f"stderr_logfile={work}/{name}.err.log\nstderr_logfile_maxbytes=0\n")
        self.conf.write_text(textwrap.dedent(f"""\
            [unix_http_server]
            file={work}/supervisor.sock
            [supervisord]
            logfile={work}/supervisord.log
            pidfile={work}/supervisord.pid
            childlogdir={work}/childlogs
            nodaemon=true
            minfds=8192
            minprocs=2000
            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
            [supervisorctl]
            serverurl=unix://{work}/supervisor.sock
            [program:{name}]
            command={' '.join(program.argv)}
            numprocs={program.count}
            autostart=false
            autorestart=true
            startsecs=0
            stopwaitsecs=5
            """) + logs)
        self.proc = spawn([str(BIN / "supervisord"), "-c", str(self.conf)], log=work / "supervisord.out")
        wait_for("supervisord", lambda: run([str(BIN / "supervisorctl"), "-c", str(self.conf), "pid"],
                                            check=False).stdout.strip().isdigit(), 60, 0.1)

    def request(self) -> subprocess.Popen[bytes]:
        target = f"{self.program.name}:*" if self.program.count > 1 else self.program.name
        return spawn([str(BIN / "supervisorctl"), "-c", str(self.conf), "start", target],
                     log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return [self.proc.pid]

    def log_files(self) -> list[Path]:
        return [self.work / f"{self.program.name}.out.log"]

    def stop(self) -> None:
        TRACKER.add_tree(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)


class Circus(Peer):
    name = "circus"

    def unavailable(self) -> str | None:
        try:
            from importlib.metadata import version
            self.version = version("circus")
        except Exception:
            return "circus is not installed (pip install circus==0.19.0)"
        probe = subprocess.run([sys.executable, "-c", "import circus.circusd, circus.circusctl"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            return f"circus does not import on Python {platform.python_version()}: " + probe.stderr.strip()[-300:]
        return None

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.program = program
        self.endpoint = f"ipc://{work}/circus.sock"
        conf = work / "circus.ini"
        name = program.name
        out = f"{work}/{name}.out.log"  # one file for all processes of the watcher
        conf.write_text(textwrap.dedent(f"""\
            [circus]
            endpoint = {self.endpoint}
            pubsub_endpoint = ipc://{work}/circus-pubsub.sock
            stats_endpoint = ipc://{work}/circus-stats.sock
            statsd = False
            check_delay = 5
            [watcher:{name}]
            cmd = {program.argv[0]}
            args = {' '.join(program.argv[1:])}
            numprocesses = {program.count}
            autostart = False
            copy_env = True
            graceful_timeout = 5
            stdout_stream.class = FileStream
            stdout_stream.filename = {out}
            stderr_stream.class = FileStream
            stderr_stream.filename = {work}/{name}.err.log
            """))
        self.proc = spawn([str(BIN / "circusd"), str(conf)], log=work / "circusd.out")
        wait_for("circusd", lambda: run(self._ctl("list"), check=False, timeout=20).returncode == 0, 60, 0.2)

    def _ctl(self, *args: str) -> list[str]:
        return [str(BIN / "circusctl"), "--endpoint", self.endpoint, "--timeout", "60", *args]

    def request(self) -> subprocess.Popen[bytes]:
        return spawn(self._ctl("start", self.program.name), log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return [self.proc.pid]

    def log_files(self) -> list[Path]:
        return [self.work / f"{self.program.name}.out.log"]

    def stop(self) -> None:
        TRACKER.add_tree(self.proc.pid)
        run(self._ctl("quit"), check=False, timeout=60)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)


class PM2(Peer):
    name = "pm2"

    def unavailable(self) -> str | None:
        if not shutil.which("node") or not shutil.which("npm"):
            return "node/npm not found"
        pm2 = NODE_DIR / "node_modules" / ".bin" / "pm2"
        package = NODE_DIR / "node_modules" / "pm2" / "package.json"
        if not pm2.exists():
            print(f"  installing pm2@{PM2_VERSION} into {NODE_DIR} ...", flush=True)
            NODE_DIR.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
                                     f"pm2@{PM2_VERSION}"], capture_output=True, text=True)
            if result.returncode != 0 or not pm2.exists():
                return f"npm install pm2 failed: {result.stderr.strip()[-300:]}"
        self.version = json.loads(package.read_text())["version"]
        self.bin = pm2
        return None

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PM2_HOME": str(self.pm2_home)}

    def start(self, work: Path, program: Program) -> None:
        self.work = work
        self.program = program
        self.pm2_home = work / "pm2home"
        self.pm2_home.mkdir()
        app = {
            "name": program.name, "script": program.argv[0], "args": program.argv[1:], "interpreter": "none",
            "exec_mode": "fork", "instances": program.count, "autorestart": True, "kill_timeout": 5000,
            "out_file": str(work / f"{program.name}.out.log"),
            "error_file": str(work / f"{program.name}.err.log"),
        }
        self.ecosystem = work / "ecosystem.config.js"
        self.ecosystem.write_text("module.exports = " + json.dumps({"apps": [app]}, indent=2) + ";\n")
        self.started = True
        run([str(self.bin), "ping"], env=self._env(), timeout=60)
        self.god = int(wait_for("the PM2 daemon", lambda: (self.pm2_home / "pm2.pid").read_text().strip(), 30))
        TRACKER.add(self.god)

    def request(self) -> subprocess.Popen[bytes]:
        return spawn([str(self.bin), "start", str(self.ecosystem)], env=self._env(), log=self.work / "request.out")

    def supervisor_pids(self) -> list[int]:
        return [self.god]

    def log_files(self) -> list[Path]:
        return sorted(self.work.glob(f"{self.program.name}.out*.log"))

    def stop(self) -> None:
        TRACKER.add_tree(self.god)
        run([str(self.bin), "kill"], env=self._env(), timeout=120, check=False)


# -- measurements -------------------------------------------------------------------------------


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


def verify(files: list[Path], n: int) -> dict[str, Any]:
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
        out.update(first=None, last=None, in_order=False, lost=n, duplicated=0)
        return out
    first, last = numbers[0], numbers[-1]
    in_order = numbers == list(range(first, first + len(numbers)))
    distinct = len(numbers) if in_order else len(set(numbers))
    out.update(first=first, last=last, in_order=in_order, lost=n - distinct, duplicated=len(numbers) - distinct,
               bytes_per_line=round(size / lines, 1) if lines else None)
    return out


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
            result.update(verify(files, n))
            return result
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
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- the run ------------------------------------------------------------------------------------


def median(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "mb":
        return f"{value / 1e6:.1f}"
    if kind == "kb":
        return f"{value / 1e3:.1f}"
    if kind == "s":
        return f"{value:.2f}"
    if kind == "cpu":
        return f"{value:.3f}"
    if kind == "mlps":
        return f"{value / 1e6:.2f}"
    if kind == "int":
        return f"{value:,.0f}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="10 s idle-CPU window (scaled to 30 s), 1 s settle, no stackblaze scale and "
                             "stock-rotation extras; same number of runs")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (median reported)")
    parser.add_argument("--peers", default="stackblaze,supervisord,circus,pm2",
                        help="comma-separated subset of stackblaze,supervisord,circus,pm2")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: children,log,baseline")
    parser.add_argument("--lines", type=int, default=2_000_000, help="lines for the log benchmark")
    parser.add_argument("--no-stock-rotation", action="store_true",
                        help="skip the extra log run of stackblaze with its stock 10 MiB x 5 rotation "
                             "(always skipped with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (for debugging)")
    parser.add_argument("--profile", action="store_true", help="py-spy dump of the stackblaze runner mid-log-run")
    args = parser.parse_args()
    cpu_window = 10.0 if args.quick else 30.0
    settle = 1.0 if args.quick else 2.0
    stock_rotation = not args.quick and not args.no_stock_rotation
    skip = set(filter(None, args.skip.split(",")))
    wanted = args.peers.split(",")

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    began = time.time()
    load = os.getloadavg()
    print(f"stackblaze bench/compare.py {'--quick ' if args.quick else ''}— {args.runs} run(s), "
          f"{psutil.cpu_count()} CPUs, load {load[0]:.2f}, Python {platform.python_version()}", flush=True)

    all_peers: dict[str, Callable[[], Peer]] = {
        "stackblaze": Stackblaze, "supervisord": Supervisord, "circus": Circus, "pm2": PM2,
    }
    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        peer = all_peers[name]()
        reason = peer.unavailable()
        if reason:
            skipped[name] = reason
            print(f"  skipping {name}: {reason}")
        else:
            peers.append(peer)
    print("  versions: " + ", ".join(f"{p.name} {p.version}" for p in peers), flush=True)
    tree = subprocess.run(["git", "-C", str(BENCH.parent), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip() or "?"
    print(f"  stackblaze tree: {tree} (the editable install runs the working tree as it is)", flush=True)

    raw: dict[str, Any] = {"children": {}, "log": {}, "baseline": {}}
    errors: list[str] = []
    producer_dir = Path(tempfile.mkdtemp(prefix="sb-bench-producer-"))
    try:
        producer, producer_kind = build_producer(producer_dir)
        print(f"  log producer: {producer_kind}", flush=True)
        for r in range(args.runs):
            if "children" not in skip:
                for peer in peers:
                    for n in (100, 300):
                        t = time.perf_counter()
                        try:
                            res = measure_children(peer, n, cpu_window if n == 100 else None, settle, args.keep,
                                                   scale_too=not args.quick)
                        except Exception as exc:
                            errors.append(f"run {r + 1} {peer.name} {n} children: {exc}")
                            traceback.print_exc()
                            res = {"error": str(exc)}
                        raw["children"].setdefault(peer.name, {}).setdefault(str(n), []).append(res)
                        print(f"  run {r + 1}: {peer.name:12} {n} children: "
                              + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in res.items() if k != "rss_each")
                              + f"  [{time.perf_counter() - t:.0f}s]", flush=True)
            if "log" not in skip:
                log_peers: list[Peer] = []
                for peer in peers:
                    if isinstance(peer, Stackblaze):
                        log_peers.append(Stackblaze(log_max_bytes=10 << 30, label="stackblaze"))  # the spec's maximum
                        if stock_rotation:
                            log_peers.append(Stackblaze(label="stackblaze (stock 10MiB x5 rotation)"))
                    else:
                        log_peers.append(peer)
                for peer in log_peers:
                    t = time.perf_counter()
                    try:
                        res = measure_log(peer, producer, args.lines, args.keep, args.profile and r == 0)
                    except Exception as exc:
                        errors.append(f"run {r + 1} {peer.name} log: {exc}")
                        traceback.print_exc()
                        res = {"error": str(exc)}
                    raw["log"].setdefault(peer.name, []).append(res)
                    print(f"  run {r + 1}: {peer.name:12} log: "
                          + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items())
                          + f"  [{time.perf_counter() - t:.0f}s]", flush=True)
            if "baseline" not in skip:
                for kind in ("direct", "cat"):
                    try:
                        res = measure_baseline(kind, producer, args.lines)
                    except Exception as exc:
                        errors.append(f"run {r + 1} baseline {kind}: {exc}")
                        res = {"error": str(exc)}
                    raw["baseline"].setdefault(kind, []).append(res)
                    print(f"  run {r + 1}: baseline {kind}: "
                          + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()),
                          flush=True)
    except KeyboardInterrupt:
        errors.append("interrupted")
        print("interrupted: tearing down")
    finally:
        TRACKER.kill_all()
        shutil.rmtree(producer_dir, ignore_errors=True)

    # -- summary --
    names = [p.name for p in peers]
    summary: dict[str, dict[str, float | None]] = {}
    for name in names:
        ch = raw["children"].get(name, {})
        s: dict[str, float | None] = {
            "rss100": median([x.get("rss") for x in ch.get("100", [])]),
            "rss300": median([x.get("rss") for x in ch.get("300", [])]),
            "cpu_idle": median([x.get("cpu_idle_s") for x in ch.get("100", [])]),
            "cpu_idle_sched": median([x.get("cpu_idle_sched_s") for x in ch.get("100", [])]),
            "start100": median([x.get("start_s") for x in ch.get("100", [])]),
            "start300": median([x.get("start_s") for x in ch.get("300", [])]),
            "scale100": median([x.get("start_scale_s") for x in ch.get("100", [])]),
            "scale300": median([x.get("start_scale_s") for x in ch.get("300", [])]),
            "log_lps": median([x.get("lines_per_s") for x in raw["log"].get(name, [])]),
            "log_lost": median([x.get("lost") for x in raw["log"].get(name, [])]),
        }
        s["per_child"] = (s["rss300"] - s["rss100"]) / 200 if s["rss100"] and s["rss300"] else None
        summary[name] = s
    metrics = [
        ("RSS, 100 children (MB)", "rss100", "mb"),
        ("RSS, 300 children (MB)", "rss300", "mb"),
        ("RSS per extra child (KB)", "per_child", "kb"),
        ("idle CPU, 30 s, 100 children (s)", "cpu_idle", "cpu"),
        ("  same, from schedstat (ns clock)", "cpu_idle_sched", "cpu"),
        ("time to 100 children (s)", "start100", "s"),
        ("time to 300 children (s)", "start300", "s"),
        ("  stackblaze scale 0->100 (s)", "scale100", "s"),
        ("  stackblaze scale 0->300 (s)", "scale300", "s"),
        ("log capture (M lines/s)", "log_lps", "mlps"),
        ("log lines lost", "log_lost", "int"),
    ]
    metrics = [m for m in metrics if any(summary[n][m[1]] is not None for n in names)]  # drop empty rows
    print()
    print(f"medians of {args.runs} run(s){'; idle CPU measured over 10 s, scaled to 30 s' if args.quick else ''}")
    print(table(["metric", *names], [[label, *(fmt(summary[n][key], kind) for n in names)]
                                     for label, key, kind in metrics]))
    if "stackblaze" in summary and len(names) > 1:
        print()
        print("ratios: stackblaze ÷ peer (RSS, CPU, time: >1 means stackblaze uses more / is slower; "
              "log capture: >1 means stackblaze is faster)")
        others = [n for n in names if n != "stackblaze"]
        rows = []
        for label, key, _ in [m for m in metrics if m[1] != "log_lost"]:
            mine = summary["stackblaze"][key]
            cells = []
            for other in others:
                theirs = summary[other][{"scale100": "start100", "scale300": "start300"}.get(key, key)]
                cells.append(f"{mine / theirs:.2f}x" if mine is not None and theirs else "-")
            rows.append([label, *cells])
        print(table(["metric", *others], rows))
    if raw["log"] or raw["baseline"]:
        print()
        print(f"log capture detail: {args.lines:,} lines of {LINE_BYTES} bytes, medians")
        rows = []
        for name, runs in [*raw["log"].items(), *((f"baseline: {k}", v) for k, v in raw["baseline"].items())]:
            ok = [x for x in runs if "error" not in x]
            if not ok:
                rows.append([name, "error", "-", "-", "-", "-", "-", "-"])
                continue
            rows.append([
                name,
                fmt(median([x.get("lines_per_s") for x in ok]), "mlps"),
                fmt(median([x.get("seconds") for x in ok]), "s"),
                fmt(median([x.get("lines") for x in ok]), "int"),
                fmt(median([x.get("lost") for x in ok]), "int"),
                str(max(x.get("files", 0) for x in ok)),
                str(ok[-1].get("bytes_per_line")),
                fmt(median([x.get("supervisor_cpu_s") for x in ok]), "s"),
            ])
        print(table(["who", "M lines/s", "seconds", "lines in files", "lost", "files", "bytes/line",
                     "supervisor CPU s"], rows))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    for error in errors:
        print(f"error: {error}")

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({
        "started": began, "seconds": time.time() - began, "quick": args.quick, "runs": args.runs,
        "cpu_window_s": cpu_window, "loadavg_at_start": load, "cpus": psutil.cpu_count(),
        "python": platform.python_version(), "versions": {p.name: p.version for p in peers}, "tree": tree,
        "skipped": skipped, "errors": errors, "summary": summary, "raw": raw, "lines": args.lines,
    }, indent=2))
    print(f"\nresults: {out}  ({time.time() - began:.0f}s in all)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
