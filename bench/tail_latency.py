"""`logs --tail` latency: from a worker's write to the line on the follower's stdout; p50 and p99.

Run by hand: `python bench/tail_latency.py [--lines 10000]`. A worker prints numbered lines carrying
their send time (time.time()) at ~1,000 lines/s; `stackblaze logs worker --tail --raw` runs as a user
would, and this script timestamps each line as it arrives on the follower's stdout. Goal: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = """
import sys, time
n = int(sys.argv[1])
time.sleep(2.0)  # let the follower attach
for i in range(n):
    print(f"{i} {time.time():.6f}", flush=True)
    if i % 10 == 9:
        time.sleep(0.01)
time.sleep(1e6)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, app = Path(tmp, "home"), Path(tmp, "app")
        app.mkdir()
        (app / "worker.py").write_text(WORKER)
        (app / "stackblaze.yaml").write_text(
            f"project: tail\nservices:\n  - name: worker\n    start: python3 worker.py {args.lines}\n")
        env = {**os.environ, "STACKBLAZE_HOME": str(home)}
        cli = [sys.executable, "-m", "stackblaze.cli"]
        subprocess.run([*cli, "daemon", "start"], env=env, check=True, capture_output=True)
        follower = None
        try:
            subprocess.run([*cli, "deploy", str(app)], env=env, check=True, capture_output=True)
            follower = subprocess.Popen([*cli, "logs", "worker", "--tail", "-n", "0", "--raw"], env=env,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)
            latencies: list[float] = []
            seen: set[int] = set()
            assert follower.stdout is not None
            deadline = time.monotonic() + 120
            while len(seen) < args.lines and time.monotonic() < deadline:
                line = follower.stdout.readline()
                arrived = time.time()
                if not line:
                    break
                number, sent = line.split(" | ", 1)[1].split()
                seen.add(int(number))
                latencies.append((arrived - float(sent)) * 1000)
        finally:
            if follower is not None:
                follower.terminate()
                follower.wait()
            subprocess.run([*cli, "daemon", "stop", "--all"], env=env, capture_output=True)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"lines received: {len(seen)}/{args.lines}")
    print(f"logs --tail latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms (goal p99 <= 100 ms)")


if __name__ == "__main__":
    main()
