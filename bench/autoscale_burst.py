#!/usr/bin/env python3
"""Issue 16's burst acceptance, per queue kind, at STACKBLAZE_TIME_SCALE=1: a worker idle at 0 (min 0, max 8),
then --jobs (10,000) jobs of ~10 ms. Measured from the first enqueue: the first replica running, the first job
started, 8 replicas running, every job done; then back to 0 after the last job, and the SIGKILLs. The bounds are
the issue's: first replica <= 3 s, 8 running <= 25 s, back to 0 <= idle_after + 5 s, 0 SIGKILLs.

Run by hand: `python bench/autoscale_burst.py [--kinds redis-list,rq] [--jobs N] [--runs N] [--poll S]
[--idle-after S] [--strict]`. Kinds: celery, rq, bullmq, dramatiq, rabbitmq, nats, redis-list (all by default).

The machinery is the acceptance tests' own (tests/integration/autoscale_kinds/scaled.py and burst.py): per run a
redis-server (the Redis kinds' broker, and where each job counts its id), the kind's broker (rabbitmq-server with
its management plugin, nats-server with JetStream), a daemon in a temp STACKBLAZE_HOME, and the kind's real
library in each replica, one job at a time. Every job is counted in Redis: a run with a job lost or run twice
reports the loss and no speed, and the script exits 1 (so does a run that failed); a missed bound exits 1 only
with --strict. BullMQ comes from npm as examples/bullmq-email locks it (`npm ci` into SB_BENCH_NODE_DIR, default
/tmp/sb-bench-bullmq, shared with autoscale_wake.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.integration.autoscale_kinds: the acceptance machinery

import pytest  # noqa: E402  (tests.tools.need() skips or fails through pytest when a tool is missing)
from tests.integration.autoscale_kinds.burst import Burst, Unfinished, burst  # noqa: E402
from tests.integration.autoscale_kinds.scaled import KINDS, deployed, install_bullmq, redis_at  # noqa: E402

MAX = 8
FIRST_REPLICA, ALL_RUNNING, AFTER_IDLE = 3.0, 25.0, 5.0  # the bounds (s)


def one_run(kind: str, args: argparse.Namespace, root: Path, node_modules: Path | None) -> Burst:
    spec = f"      min: 0\n      max: {MAX}\n      poll: {args.poll:g}s\n      idle_after: {args.idle_after:g}s\n"
    with redis_at(root / "redis") as url, deployed(root, kind, scale=1.0, autoscale=spec, grace="20s",
                                                   redis_url=url, node_modules=node_modules) as worker:
        return burst(worker, args.jobs, MAX, done_within=60 + args.jobs * 0.05, zero_within=args.idle_after + 60)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def table(kind: str, runs: list[Burst | str]) -> None:
    print(f"\n{kind}")
    print(f"  {'run':>3}  {'enqueued':>9}  {'1st replica':>11}  {'1st job':>8}  {f'{MAX} running':>10}  {'peak':>4}  "
          f"{'all done':>9}  {'to 0 after':>10}  {'SIGKILLs':>8}  jobs")
    for n, found in enumerate(runs, 1):
        if isinstance(found, str):
            print(f"  {n:>3}  FAILED: {found}")
        elif found.lost or found.repeated:
            print(f"  {n:>3}  {'-':>9}  {'-':>11}  {'-':>8}  {'-':>10}  {'-':>4}  {'-':>9}  {'-':>10}  "
                  f"{len(found.kills):>8}  LOST {found.lost}, REPEATED {found.repeated} of {found.jobs}: no speed")
        else:
            print(f"  {n:>3}  {seconds(found.enqueued):>9}  {seconds(found.woke):>11}  {seconds(found.first_job):>8}  "
                  f"{seconds(found.full):>10}  {found.peak:>4}  {seconds(found.finished):>9}  "
                  f"{seconds(found.to_zero):>10}  {len(found.kills):>8}  {found.jobs} once each")
    good = [r for r in runs if isinstance(r, Burst) and not r.lost and not r.repeated]
    for found in good:
        print("  autoscaled " + ", ".join(f"{a}->{b} at {at:.1f}s" for a, b, at in found.steps))


def acceptance(kind: str, runs: list[Burst | str], idle_after: float) -> bool:
    """The issue's line per bound, on the worst correct run; False when one is missed (or no run was correct)."""
    good = [r for r in runs if isinstance(r, Burst) and not r.lost and not r.repeated]
    if len(good) < len(runs):
        print(f"  {kind}: {len(runs) - len(good)} of {len(runs)} runs failed or lost jobs: no acceptance figures")
        return False
    woke = max(r.woke for r in good)
    full = [r.full for r in good]
    to_zero = max(r.to_zero for r in good)
    kills = max(len(r.kills) for r in good)
    worst_full = None if None in full else max(f for f in full if f is not None)
    lines = [
        (f"first replica within {FIRST_REPLICA:g} s", woke <= FIRST_REPLICA, f"{woke:.2f}s"),
        (f"{MAX} running within {ALL_RUNNING:g} s", worst_full is not None and worst_full <= ALL_RUNNING,
         seconds(worst_full) if worst_full is not None else f"never (peak {min(r.peak for r in good)})"),
        ("every job done exactly once", True, f"{good[0].jobs} jobs x {len(good)} runs"),
        (f"back to 0 within idle_after + {AFTER_IDLE:g} s = {idle_after + AFTER_IDLE:g} s",
         to_zero <= idle_after + AFTER_IDLE, f"{to_zero:.2f}s"),
        ("0 SIGKILLs", kills == 0, str(kills)),
    ]
    for what, met, figure in lines:
        print(f"  {kind}: {what}: {'met' if met else 'MISSED'} ({figure}"
              + (f", median {statistics.median(r.woke for r in good):.2f}s" if len(good) > 1 and what.startswith(
                  "first") else "") + ")")
    return all(met for _, met, _ in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated (default: all)")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--poll", type=float, default=1.0, help="autoscale poll (s)")
    parser.add_argument("--idle-after", type=float, default=3.0, help="autoscale idle_after (s)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a bound is missed, too")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"--kinds {','.join(unknown)}: not a kind; choose among {','.join(KINDS)}")
    described = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    print(f"autoscale burst: {args.jobs} jobs of 10 ms per run, {args.runs} run(s) per kind, STACKBLAZE_TIME_SCALE=1, "
          f"min 0, max {MAX}, poll {args.poll:g}s, idle_after {args.idle_after:g}s, the default scale-up "
          f"(window 10s, 4 pods or 100% per 15s); stackblaze {described.stdout.strip()}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    failed, missed = False, False
    try:
        node_modules = (install_bullmq(Path(os.environ.get("SB_BENCH_NODE_DIR", "/tmp/sb-bench-bullmq")))
                        if "bullmq" in kinds else None)
        with tempfile.TemporaryDirectory(prefix="sb-burst-") as name:
            for kind in kinds:
                runs: list[Burst | str] = []
                for run in range(args.runs):
                    try:
                        found: Burst | str = one_run(kind, args, Path(name) / f"{kind}-{run}", node_modules)
                    except Unfinished as unfinished:  # jobs lost: reported as such, without speed
                        found = unfinished.burst
                    except Exception as error:  # a wait that timed out, a command that failed: the next run goes on
                        found = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                    runs.append(found)
                    print(f"  {kind} run {run + 1}: {found}", flush=True)
                table(kind, runs)
                met = acceptance(kind, runs, args.idle_after)
                failed = failed or any(isinstance(r, str) or r.lost or r.repeated for r in runs)
                missed = missed or not met
    except (pytest.skip.Exception, pytest.fail.Exception) as missing:  # a broker or node not installed here
        print(f"autoscale_burst.py: {missing.msg}", file=sys.stderr)
        return 1
    return 1 if failed or (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
