#!/usr/bin/env python3
"""`logs --tail` latency: from a worker's print to the line on the follower's stdout; p50, p95, p99.

    . .venv/bin/activate && python bench/tail_latency.py [--lines 2000] [--interval-ms 5] [--peers stackblaze,pm2]

A real daemon (temp STACKBLAZE_HOME) runs one worker. It prints `ready` until the follower
(`stackblaze logs worker --tail -n 0 --json`, run as a user would) has shown it, so the measurement starts
only once the follower is attached; then a numbered line carrying its send time (time.time()) every
`--interval-ms`. This script stamps each line as it arrives on the follower's stdout; latency = arrival -
send time. Every line must arrive once and in order: a lost, repeated or reordered line fails the run
(exit 1) and no latency is printed for it. Goal (issue 12): p99 <= 20 ms.

The peer: PM2 (`pm2 logs worker --raw --lines 0`, same worker, its own PM2_HOME; installed from npm into
/tmp/sb-bench-node on first use, as compare.py does) when `--peers` names it and it can run here.
To measure another checkout (e.g. the code before a change), put its src/ first:
`PYTHONPATH=/tmp/before/src python bench/tail_latency.py`.

`--peers browser` measures the dashboard: headless chromium reading the service's server-sent log events
(goal: p99 <= 50 ms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = """
import os, sys, time
n, go, every = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) / 1000
while not os.path.exists(go):  # until the follower has shown a `ready`
    print("ready", flush=True)
    time.sleep(0.05)
for i in range(n):
    print(f"{i} {time.time():.6f}", flush=True)
    time.sleep(every)
time.sleep(1e6)
"""
ATTACH_DEADLINE = 60.0  # daemon, deploy and follower start-up
LINES_DEADLINE = 300.0


@dataclass
class Run:
    peer: str
    latencies: list[float]  # ms, in arrival order
    arrived: list[int]  # the numbers in the order they arrived
    error: str | None = None

    def problems(self, lines: int) -> str | None:
        lost = lines - len(set(self.arrived) & set(range(lines)))
        repeated = len(self.arrived) - len(set(self.arrived))
        reordered = sum(1 for before, after in itertools.pairwise(self.arrived) if after < before)
        if self.error or lost or repeated or reordered:
            return self.error or f"lost {lost}, repeated {repeated}, out of order {reordered}"
        return None


def follow(proc: subprocess.Popen[bytes], deadline: float) -> Iterator[tuple[float, str]]:
    """(arrival time, text) of each line the follower prints, until `deadline` or its exit."""
    assert proc.stdout is not None
    fd, pending = proc.stdout.fileno(), b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        if not ready:
            continue
        data = os.read(fd, 1 << 16)
        arrived = time.time()
        if not data:
            return
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            yield arrived, line.decode("utf-8", "replace")


def read_lines(follower: subprocess.Popen[bytes], text_of: Callable[[str], str], go: Path, lines: int,
               peer: str) -> Run:
    result = Run(peer, [], [])
    for when, shown in follow(follower, time.monotonic() + ATTACH_DEADLINE + LINES_DEADLINE):
        fields = text_of(shown).split()
        if fields == ["ready"]:
            go.touch()  # the follower is attached: the numbered lines may start
            continue
        if len(fields) != 2:
            continue  # a peer's banner
        result.arrived.append(int(fields[0]))
        result.latencies.append((when - float(fields[1])) * 1000)
        if result.arrived[-1] == lines - 1:
            break
    return result


def stackblaze(env: dict[str, str], *args: str) -> None:
    """Run the CLI as a user would; a failure ends the benchmark with what the CLI said."""
    done = subprocess.run([sys.executable, "-m", "stackblaze.cli", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise SystemExit(f"stackblaze {' '.join(args)} exited {done.returncode}: {said}")


def stop(follower: subprocess.Popen[bytes] | None) -> None:
    if follower is not None:
        follower.terminate()
        follower.wait()


def measure_stackblaze(lines: int, interval_ms: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="sb-bench-tail-") as tmp:
        env, app, go = _project(Path(tmp), lines, interval_ms)
        stackblaze(env, "daemon", "start")
        follower = None
        try:
            stackblaze(env, "deploy", str(app))
            follower = subprocess.Popen([sys.executable, "-m", "stackblaze.cli", "logs", "worker", "--tail", "-n", "0",
                                         "--json"], env=env, stdout=subprocess.PIPE)
            return read_lines(follower, lambda shown: str(json.loads(shown)["line"]), go, lines, "stackblaze")
        finally:
            stop(follower)
            subprocess.run([sys.executable, "-m", "stackblaze.cli", "daemon", "stop", "--all"], env=env,
                           capture_output=True)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# In the dashboard's page: the same log stream its service page reads, each event stamped on arrival.
LISTEN = """() => { window.got = []; const es = new EventSource('/v1/logs/stream?project=tail&service=worker&n=0');
  es.onmessage = (e) => { window.got.push([Date.now() / 1000, JSON.parse(e.data).line]); }; }"""


def measure_browser(lines: int, interval_ms: float) -> Run:
    """The dashboard: headless Debian chromium (Playwright) on `stackblaze dashboard`'s URL, reading the
    service's server-sent log events as the service page does; latency = the event in the browser - printed
    (one clock: the browser runs on this machine). Rendering the line into the page is not included."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return Run("browser", [], [], error="skipped: playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).exists():
        return Run("browser", [], [], error=f"skipped: no {CHROMIUM} (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="sb-bench-tail-browser-") as tmp:
        env, app, go = _project(Path(tmp), lines, interval_ms)
        stackblaze(env, "daemon", "start")
        try:
            stackblaze(env, "deploy", str(app))
            shown = subprocess.run([sys.executable, "-m", "stackblaze.cli", "dashboard", "--no-open", "--json"],
                                   env=env, capture_output=True, text=True, check=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page()
                    page.goto(json.loads(shown.stdout)["url"])  # the token becomes the cookie
                    page.evaluate(LISTEN)
                    return _browser_lines(page, go, lines)
                finally:
                    browser.close()
        finally:
            subprocess.run([sys.executable, "-m", "stackblaze.cli", "daemon", "stop", "--all"], env=env,
                           capture_output=True)


def _browser_lines(page: Any, go: Path, lines: int) -> Run:
    result, seen = Run("browser (dashboard SSE)", [], []), 0
    deadline = time.monotonic() + ATTACH_DEADLINE + LINES_DEADLINE
    while time.monotonic() < deadline:
        fresh = page.evaluate(f"window.got.slice({seen})")
        seen += len(fresh)
        for when, text in fresh:
            fields = text.split()
            if fields == ["ready"]:
                go.touch()
            elif len(fields) == 2:
                result.arrived.append(int(fields[0]))
                result.latencies.append((when - float(fields[1])) * 1000)
        if result.arrived and result.arrived[-1] == lines - 1:
            return result
        page.wait_for_timeout(50)  # the browser's own timers keep running: events are stamped as they come
    result.error = "timed out"
    return result


def _project(tmp: Path, lines: int, interval_ms: float) -> tuple[dict[str, str], Path, Path]:
    home, app, go = tmp / "home", tmp / "app", tmp / "go"
    app.mkdir()
    (app / "worker.py").write_text(WORKER)
    (app / "stackblaze.yaml").write_text(
        "project: tail\nservices:\n  - name: worker\n"
        f"    start: python3 worker.py {lines} {go} {interval_ms}\n")
    # workers as the daemon's user: the temp dir is 0700 (README: when the daemon runs as root)
    env = {**os.environ, "STACKBLAZE_HOME": str(home),
           "STACKBLAZE_WORKER_USER": os.environ.get("STACKBLAZE_WORKER_USER", "root")}
    return env, app, go


def measure_pm2(lines: int, interval_ms: float) -> Run:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # compare.py's peers, beside this script
    from compare_peers import PM2, Program
    from compare_procs import TRACKER

    peer = PM2()
    why = peer.unavailable()
    if why is not None:
        return Run("pm2", [], [], error=f"skipped: {why}")
    with tempfile.TemporaryDirectory(prefix="sb-bench-tail-pm2-") as tmp:
        work, go = Path(tmp), Path(tmp, "go")
        (work / "worker.py").write_text(WORKER)
        follower = None
        try:
            peer.start(work, Program("worker", [sys.executable, str(work / "worker.py"), str(lines), str(go),
                                                str(interval_ms)], 1))
            peer.request().wait(120)
            follower = subprocess.Popen([str(peer.bin), "logs", "worker", "--raw", "--lines", "0"],
                                        env={**os.environ, "PM2_HOME": str(peer.pm2_home)}, stdout=subprocess.PIPE)
            return read_lines(follower, lambda shown: shown, go, lines, f"pm2 {peer.version}")
        finally:
            stop(follower)
            peer.stop()
            TRACKER.kill_all()


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, min(len(ordered) - 1, round(len(ordered) * fraction + 0.5) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000)
    parser.add_argument("--interval-ms", type=float, default=5.0, help="the worker's pause after each line")
    parser.add_argument("--quick", action="store_true", help="500 lines")
    parser.add_argument("--peers", default="stackblaze", help="stackblaze,browser,pm2 (default: stackblaze)")
    args = parser.parse_args()
    lines = 500 if args.quick else args.lines
    measures = {"stackblaze": measure_stackblaze, "browser": measure_browser, "pm2": measure_pm2}
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if unknown := [p for p in peers if p not in measures]:
        parser.error(f"--peers: {', '.join(unknown)} unknown (use stackblaze, browser, pm2)")
    print(f"{lines:,} lines, one every {args.interval_ms:g} ms; latency = shown on the follower's stdout - printed")
    runs = [measures[peer](lines, args.interval_ms) for peer in peers]
    failed = False
    print(f"\n| {'follower':<24} | {'lines':>11} | {'p50':>8} | {'p95':>8} | {'p99':>8} | {'max':>8} |")
    print(f"| {'-' * 24} | {'-' * 10}: | {'-' * 7}: | {'-' * 7}: | {'-' * 7}: | {'-' * 7}: |")
    for run in runs:
        problem = run.problems(lines)
        if problem:
            failed = failed or not problem.startswith("skipped")
            print(f"| {run.peer:<24} | {len(run.arrived):>5}/{lines:<5} | {problem}")
            continue
        ordered = sorted(run.latencies)
        cells = " | ".join(f"{percentile(ordered, f):5.1f} ms" for f in (0.5, 0.95, 0.99, 1.0))
        print(f"| {run.peer:<24} | {len(run.arrived):>5}/{lines:<5} | {cells} |")
    stackblaze_run = next((r for r in runs if r.peer == "stackblaze" and not r.problems(lines)), None)
    if stackblaze_run is not None:
        p99 = percentile(sorted(stackblaze_run.latencies), 0.99)
        print(f"\nstackblaze logs --tail p99 {p99:.1f} ms: goal <= 20 ms {'met' if p99 <= 20 else 'MISSED'}")
    browser_run = next((r for r in runs if r.peer.startswith("browser") and not r.problems(lines)), None)
    if browser_run is not None:
        p99 = percentile(sorted(browser_run.latencies), 0.99)
        print(f"dashboard (browser) p99 {p99:.1f} ms: goal <= 50 ms {'met' if p99 <= 50 else 'MISSED'}")
    if failed:
        print("FAILED: a follower did not show every line once and in order; no latency is reported for it")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
