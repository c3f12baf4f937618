#!/usr/bin/env python3
"""Wake latency from zero: a job enqueued to a worker that has sat at 0 replicas for --idle seconds (60), with
push wake and with the poll alone (STACKBLAZE_AUTOSCALE_PUSH=off), at STACKBLAZE_TIME_SCALE=1, for RQ and BullMQ.

Run by hand: `python bench/autoscale_wake.py [--runs N] [--idle S] [--poll S] [--kinds rq,bullmq]`.
It starts its own redis-server (keyspace notifications on) and a daemon per kind and mode in a temp
STACKBLAZE_HOME. Per run: enqueue -> the replica's process running its first line (wake), enqueue -> the
job's first line (start); and, for comparison, the boot of the worker alone (started by hand with a job
waiting: its process start -> the job's first line). Prints p50 and max per kind and mode, and the acceptance
line: job started <= 0.3 s + boot with push, <= poll + boot with the poll alone (boot: the median alone). At 0
the poll alone reads 10 times a poll (engine/autoscale/sampling.py), so it should start within about poll / 10
+ boot.
BullMQ comes from npm as examples/bullmq-email locks it
(`npm ci` into SB_BENCH_NODE_DIR, default /tmp/sb-bench-bullmq).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import redis

ROOT = Path(__file__).resolve().parents[1]
PY_WORKER = """\
import os, time
SPAWNED = time.time()
import redis
from rq import Queue, Worker
conn = redis.Redis.from_url(os.environ["REDIS_URL"])
conn.hsetnx("spawned", os.getpid(), SPAWNED)
Worker([Queue("default", connection=conn)], connection=conn).work(logging_level="WARNING")
"""
PY_TASKS = """\
import os, time, redis

def work(job_id):
    redis.Redis.from_url(os.environ["REDIS_URL"]).hset("started", job_id, time.time())
"""
JS_WORKER = """\
const spawned = Date.now() / 1000;
const { Worker } = require('bullmq');
const IORedis = require('ioredis');
const url = new URL(process.env.REDIS_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const marks = new IORedis(connection);
marks.hsetnx('spawned', process.pid, spawned);
const worker = new Worker('email', async (job) => { await marks.hset('started', job.data.id, Date.now() / 1000); },
  { connection });
process.on('SIGTERM', async () => { await worker.close(); process.exit(0); });
"""
JS_ADD = """\
const { Queue } = require('bullmq');
const queue = new Queue('email', { connection: { host: '127.0.0.1', port: Number(process.argv[2]) } });
(async () => {
  await queue.waitUntilReady();
  await queue.add('warm-up', { id: 'warm-up' }, { delay: 86400000 });  // connection and scripts loaded
  process.stdout.write('ready\\n');
  for await (const line of require('readline').createInterface({ input: process.stdin })) {
    const at = Date.now() / 1000;
    await queue.add('job', { id: line.trim() });
    process.stdout.write(`${at}\\n`);
  }
  await queue.close();
})();
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")


def bullmq_dir() -> Path:
    target = Path(os.environ.get("SB_BENCH_NODE_DIR", "/tmp/sb-bench-bullmq"))
    if not (target / "node_modules" / "bullmq").exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(ROOT / "examples" / "bullmq-email" / name, target / name)
        subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=target, check=True, timeout=600)
    (target / "wake_worker.js").write_text(JS_WORKER)
    (target / "wake_add.js").write_text(JS_ADD)
    return target


class Enqueuer:
    """Adds one job and answers the time just before the add (BullMQ through one long-lived node process, so
    node's start-up is not counted)."""

    def __init__(self, kind: str, url: str, node_dir: Path | None) -> None:
        self.kind, self.conn = kind, redis.Redis.from_url(url)
        self.proc: subprocess.Popen[str] | None = None
        if kind == "bullmq":
            assert node_dir is not None
            port = str(self.conn.connection_pool.connection_kwargs["port"])
            self.proc = subprocess.Popen(["node", "wake_add.js", port], cwd=node_dir, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def add(self, job_id: str) -> float:
        if self.proc is None:
            from rq import Queue

            at = time.time()
            Queue("default", connection=self.conn).enqueue("tasks.work", job_id)
            return at
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(job_id + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def project(app: Path, kind: str, url: str, home: Path, poll: float, node_dir: Path | None) -> Path:
    app.mkdir(parents=True, exist_ok=True)
    if kind == "rq":
        (app / "worker.py").write_text(PY_WORKER)
        (app / "tasks.py").write_text(PY_TASKS)
        start, queues = f"{sys.executable} -u worker.py", f"{{kind: rq, url: \"{url}\", names: [default]}}"
    else:
        assert node_dir is not None
        start, queues = f"node {node_dir / 'wake_worker.js'}", f"{{kind: bullmq, url: \"{url}\", names: [email]}}"
    (app / "stackblaze.yaml").write_text(f"""\
project: wake{kind}
env:
  REDIS_URL: "{url}"
services:
  - name: worker
    type: worker
    start: {start}
    autoscale: {{min: 0, max: 1, poll: {poll:g}s, idle_after: 0s, queues: {queues}}}
""")
    return app


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "stackblaze.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"stackblaze {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}")
    return done.stdout


def at_zero(env: dict[str, str]) -> bool:
    import json

    service = json.loads(cli(env, "ps", "worker", "--json"))["services"][0]
    return service["desired"] == 0 and not service["replicas"]


def measure(kind: str, push: bool, url: str, args: argparse.Namespace, node_dir: Path | None, tmp: Path
            ) -> list[tuple[float, float]]:
    """(enqueue -> replica process running, enqueue -> job running) per run."""
    home = tmp / f"home-{kind}-{'push' if push else 'poll'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
    env.update({"STACKBLAZE_HOME": str(home), "STACKBLAZE_TIME_SCALE": "1",
                "STACKBLAZE_WORKER_USER": os.environ.get("STACKBLAZE_WORKER_USER", "root"),
                "STACKBLAZE_AUTOSCALE_PUSH": "on" if push else "off"})
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    enqueuer = Enqueuer(kind, url, node_dir)
    results = []
    try:
        cli(env, "deploy", str(project(tmp / f"app-{kind}", kind, url, home, args.poll, node_dir)))
        for run in range(args.runs):
            wait("the worker at 0", lambda: at_zero(env), args.poll * 3 + 30)
            time.sleep(args.idle)
            conn.delete("spawned", "started")
            enqueued = enqueuer.add(str(run))
            job = str(run)
            started = float(wait("the job started", lambda job=job: conn.hget("started", job), args.poll * 3 + 60))
            spawned = min(float(v) for v in cast(list[bytes], conn.hvals("spawned")))
            results.append((spawned - enqueued, started - enqueued))
            print(f"  {kind} {'push' if push else 'poll'} run {run + 1}: wake {spawned - enqueued:.3f}s, "
                  f"job started {started - enqueued:.3f}s", flush=True)
    finally:
        enqueuer.close()
        cli(env, "daemon", "stop", "--all")
    return results


def boot_alone(kind: str, url: str, node_dir: Path | None, tmp: Path, runs: int) -> list[float]:
    """The worker started by hand with a job already waiting: process start -> the job's first line."""
    conn = redis.Redis.from_url(url)
    app = tmp / f"app-{kind}"
    env = {**os.environ, "REDIS_URL": url}
    script = str(Path(str(node_dir)) / "wake_worker.js")
    command = [sys.executable, "-u", "worker.py"] if kind == "rq" else ["node", script]
    enqueuer = Enqueuer(kind, url, node_dir)
    boots = []
    try:
        for run in range(runs):
            conn.flushdb()
            enqueuer.add(f"boot{run}")
            began = time.time()
            proc = subprocess.Popen(command, cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                job = f"boot{run}"
                started = float(wait("the job started", lambda job=job: conn.hget("started", job), 60))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            boots.append(started - began)
    finally:
        enqueuer.close()
    return boots


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.3f}s  max {max(values):.3f}s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds at 0 before each enqueue")
    parser.add_argument("--poll", type=float, default=5.0, help="autoscale poll (s); 5 is the local default")
    parser.add_argument("--kinds", default="rq,bullmq")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    node_dir = bullmq_dir() if "bullmq" in kinds else None
    failed = False
    with tempfile.TemporaryDirectory(prefix="sb-wake-") as name:
        tmp = Path(name)
        port = free_port()
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", name, "--notify-keyspace-events", "Kl"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            wait("redis-server", lambda: _pings(url), 10)
            rows: list[tuple[str, bool | None, list[tuple[float, float]]]] = []
            for kind in kinds:
                for push in (True, False):
                    found = measure(kind, push, url, args, node_dir, tmp)
                    rows.append((kind, push, found))
                boots = boot_alone(kind, url, node_dir, tmp, args.runs)
                rows.append((kind, None, [(b, b) for b in boots]))
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"\nwake latency after {args.idle:g}s at 0, poll {args.poll:g}s, STACKBLAZE_TIME_SCALE=1, {args.runs} runs")
    print(f"{'kind':7} {'mode':10} {'enqueue -> replica running':32} {'enqueue -> job started':32}")
    boot = {kind: statistics.median(b for b, _ in found) for kind, mode, found in rows if mode is None}
    for kind, mode, found in rows:
        if mode is None:
            print(f"{kind:7} {'boot alone':10} {'':32} {summary([b for b, _ in found]):32}")
            continue
        wakes, starts = [w for w, _ in found], [s for _, s in found]
        # The acceptance line: job started <= 0.3 s + boot with push, <= poll + boot without.
        goal = (0.3 if mode else args.poll) + boot[kind]
        ok = max(starts) <= goal
        failed = failed or not ok
        print(f"{kind:7} {'push' if mode else 'poll only':10} {summary(wakes):32} {summary(starts):32} "
              f"goal start <= {0.3 if mode else args.poll:g}s + boot {boot[kind]:.3f}s: {'met' if ok else 'MISSED'}")
    return 1 if failed else 0


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


if __name__ == "__main__":
    sys.exit(main())
