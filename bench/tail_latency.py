#!/usr/bin/env python3
"""`logs --tail` latency: from a worker's write to the line on the follower's stdout; p50 and p99.

    . .venv/bin/activate && python bench/tail_latency.py [--lines 10000] [--quick]

A worker prints `ready` until the follower (`stackblaze logs worker --tail -n 0 --raw`, run as a user would)
has shown it, so the measurement starts only once the follower is attached; then numbered lines carrying
their send time (time.time()) at ~1,000 lines/s. This script timestamps each line as it arrives on the
follower's stdout. Every line must arrive once and in order: a lost, repeated or reordered line fails the
run (exit 1) and no latency is printed. Goal: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import itertools
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

WORKER = """
import os, sys, time
n, go = int(sys.argv[1]), sys.argv[2]
while not os.path.exists(go):  # until the follower has shown a `ready`
    print("ready", flush=True)
    time.sleep(0.05)
for i in range(n):
    print(f"{i} {time.time():.6f}", flush=True)
    if i % 10 == 9:
        time.sleep(0.01)
time.sleep(1e6)
"""
ATTACH_DEADLINE = 60.0  # daemon, deploy and follower start-up
LINES_DEADLINE = 120.0


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


def stackblaze(env: dict[str, str], *args: str) -> None:
    """Run the CLI as a user would; a failure ends the benchmark with what the CLI said."""
    done = subprocess.run([sys.executable, "-m", "stackblaze.cli", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise SystemExit(f"stackblaze {' '.join(args)} exited {done.returncode}: {said}")


def measure(lines: int) -> tuple[list[float], list[int]]:
    """Latencies (ms) and the numbers in the order they arrived."""
    with tempfile.TemporaryDirectory(prefix="sb-bench-tail-") as tmp:
        home, app, go = Path(tmp, "home"), Path(tmp, "app"), Path(tmp, "go")
        app.mkdir()
        (app / "worker.py").write_text(WORKER)
        (app / "stackblaze.yaml").write_text(
            f"project: tail\nservices:\n  - name: worker\n    start: python3 worker.py {lines} {go}\n")
        # workers as the daemon's user: the temp dir is 0700 (README: when the daemon runs as root)
        env = {**os.environ, "STACKBLAZE_HOME": str(home),
               "STACKBLAZE_WORKER_USER": os.environ.get("STACKBLAZE_WORKER_USER", "root")}
        stackblaze(env, "daemon", "start")
        follower = None
        latencies: list[float] = []
        arrived: list[int] = []
        try:
            stackblaze(env, "deploy", str(app))
            follower = subprocess.Popen([sys.executable, "-m", "stackblaze.cli", "logs", "worker", "--tail", "-n", "0",
                                         "--raw"], env=env, stdout=subprocess.PIPE)
            for when, text in follow(follower, time.monotonic() + ATTACH_DEADLINE + LINES_DEADLINE):
                fields = text.split(" | ", 1)[-1].split()
                if fields == ["ready"]:
                    go.touch()  # the follower is attached: the numbered lines may start
                    continue
                arrived.append(int(fields[0]))
                latencies.append((when - float(fields[1])) * 1000)
                if arrived[-1] == lines - 1:
                    break
        finally:
            if follower is not None:
                follower.terminate()
                follower.wait()
            subprocess.run([sys.executable, "-m", "stackblaze.cli", "daemon", "stop", "--all"], env=env,
                           capture_output=True)
    return latencies, arrived


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="2,000 lines")
    args = parser.parse_args()
    lines = 2_000 if args.quick else args.lines
    latencies, arrived = measure(lines)
    lost = lines - len(set(arrived) & set(range(lines)))
    duplicated = len(arrived) - len(set(arrived))
    out_of_order = sum(1 for before, after in itertools.pairwise(arrived) if after < before)
    print(f"lines received: {len(arrived):,}/{lines:,} (lost {lost}, duplicated {duplicated}, "
          f"out of order {out_of_order})")
    if lost or duplicated or out_of_order:
        print("FAILED: the follower did not show every line once and in order; no latency is reported")
        return 1
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(f"logs --tail latency: p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1]:.1f} ms (goal p99 <= 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
