"""bench/compare.py's processes: every PID it started, killed at the end whatever happens, and what it
measures of a process tree (RSS, CPU time, live children)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

CHILD_NAME = "sleep"  # what the children benchmark runs (`sleep 100000`)


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
