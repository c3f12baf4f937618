"""Issue 16's steadiness line on real processes: "Steady Poisson load (40 jobs/s × 100 ms) for 10 minutes: ≤ 2
replica changes after warm-up, no up-down-up reversal within 5 minutes; a step load is followed within 20 s up
and the window + 10 s down."

A real daemon and runner at STACKBLAZE_TIME_SCALE=0.1 (10 platform minutes are 60 real seconds; the poll, the
windows and the policies' periods scale with it), a real redis-server, a producer process enqueuing Poisson
arrivals and the worker deployed by stackblaze with the autoscale defaults (max 20). One run: 600 platform s
at 4 replica-equivalents, 100 s at 8, then 330 s at 2. About 2 real minutes; STACKBLAZE_SKIP_STEADY_AUTOSCALE=1
skips it (nothing else does).

The rate is a quarter of the issue's, the jobs four times longer: 10 jobs/s × 400 ms platform (100 jobs/s × 40
ms real) rather than 40 × 100 ms (400/s × 10 ms real). The criterion's meaning is the work the loop reads, and
that is kept: the same 4 jobs in flight on average with the same Poisson spread, and jobs still shorter than the
0.5 s between a poll's reads, so the reads are as independent as at 100 ms (simulated over 100 seeds, both
profiles settle at 6 or 7 replicas; test_simulation.py). At 400 jobs/s real, this 2-core
machine, shared with other test runs, stalls the workers for a few hundred milliseconds now and then, and a
stall at that rate piles up 40+ jobs, one poll's spike that the 300 s window then holds (seen: 12 replicas
for 4 replica-equivalents); at 100/s a stall piles up a quarter of that.

The worker is not RQ itself: RQ's bookkeeping costs 3-5 ms of CPU per job (a forking worker far more), which
at 100-200 jobs/s would be that same CPU contention. It keeps RQ's Redis layout instead: the job's id is
RPUSHed onto rq:queue:default (the queue registered in rq:queues, as RQ does), a worker BLPOPs it and keeps it
in the rq:wip:default registry while it runs (the ZADD follows the pop by one round trip, ~0.2 ms of a 40 ms
job), and stops on SIGTERM after its job. The daemon reads it with the real `rq` reader: ready = the list, in
flight = the registry.

A single run can fail where the simulation says the policy does: by this test's criteria, 1 seed in 100 at the
issue's profile and 2 at this one's (a third change from Poisson noise after the warm-up's descent; 3 and 2
before the settling poll); the assertion message then shows every change.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.conftest import Stackblaze, wait_for, write_project

pytestmark = pytest.mark.skipif(os.environ.get("STACKBLAZE_SKIP_STEADY_AUTOSCALE") == "1",
                                reason="STACKBLAZE_SKIP_STEADY_AUTOSCALE=1")

SCALE = 0.1  # platform seconds are real seconds / SCALE
JOB = 0.4  # platform seconds per job
# (platform seconds from the load's start, jobs per platform second): steady 4 replica-equivalents, 8, then 2
PHASES = ((0.0, 10.0), (600.0, 20.0), (700.0, 5.0))
END = 1030.0
WARM_UP = 60.0

WORKER = """\
import os, signal, time, redis
r = redis.Redis.from_url(os.environ["REDIS_URL"])
stop = False
def on_term(signum, frame):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
while not stop:
    got = r.blpop(["rq:queue:default"], timeout=0.1)
    if got is None:
        continue
    job = got[1]
    r.zadd("rq:wip:default", {job: time.time() + 600})
    time.sleep(float(os.environ["JOB_SECONDS"]))
    p = r.pipeline()
    p.zrem("rq:wip:default", job)
    p.incr("done")
    p.execute()
"""

# Arrivals of a Poisson process per phase, computed up front from a seed; each tick pushes the jobs whose time
# has come (one pipeline), so a late tick delays jobs by a few milliseconds, never drops or bunches a phase.
PRODUCER = """\
import json, random, sys, time, redis
url, phases, end, seed = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
times, t = [], 0.0
for i, (start, rate) in enumerate(phases):
    stop = phases[i + 1][0] if i + 1 < len(phases) else end
    t = max(t, start)
    while True:
        t += rng.expovariate(rate)
        if t >= stop:
            t = stop
            break
        times.append(t)
r = redis.Redis.from_url(url)
r.sadd("rq:queues", "rq:queue:default")
t0 = time.time()
r.set("t0", repr(t0))
sent = 0
while sent < len(times):
    now = time.time() - t0
    due = sent
    while due < len(times) and times[due] <= now:
        due += 1
    if due > sent:
        r.rpush("rq:queue:default", *range(sent, due))
        sent = due
    time.sleep(0.002)
r.set("sent", sent)
"""


@dataclass
class Record:
    """What one run left: every autoscale change as (platform seconds from the load's start, from, to)."""

    changes: list[tuple[float, int, int]]
    sent: int
    done: int
    messages: list[str]

    def between(self, after: float, before: float) -> list[tuple[float, int, int]]:
        return [c for c in self.changes if after < c[0] <= before]

    def count_at(self, when: float, initial: int = 1) -> int:
        count = initial
        for at, _, to in self.changes:
            if at <= when:
                count = to
        return count

    def first(self, after: float, predicate: Any) -> float | None:
        return next((at for at, _, to in self.changes if at > after and predicate(to)), None)


def _redis(tmp: Path) -> Iterator[str]:
    from tests.integration.conftest import _pings, free_port
    from tests.tools import need

    port = free_port()
    data = tmp / "redis"
    data.mkdir()
    server = subprocess.Popen([need("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(data)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("redis-server to answer", lambda: _pings(redis.Redis(port=port)), timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Record]:
    """Deploy, run the three phases, read the autoscale events; shared by the steady and the step test."""
    tmp = tmp_path_factory.mktemp("steady")
    home = tmp / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
    env.update({"STACKBLAZE_HOME": str(home), "STACKBLAZE_TIME_SCALE": str(SCALE), "STACKBLAZE_WORKER_USER": "root"})
    sb = Stackblaze(home=home, env=env)
    redis_server = _redis(tmp)
    url = next(redis_server)
    producer: subprocess.Popen[bytes] | None = None
    try:
        spec = f"""\
project: steady
env:
  REDIS_URL: "{url}"
  JOB_SECONDS: "{JOB * SCALE}"
  STACKBLAZE_TEST_HOME: "{home}"
services:
  - name: worker
    type: worker
    start: {sys.executable} -u worker.py
    autoscale:
      max: 20
      queues: {{kind: rq, url: "{url}", names: [default]}}
"""
        app = write_project(tmp / "app", spec, {"worker.py": WORKER, "producer.py": PRODUCER})
        sb.run("deploy", str(app), timeout=300)
        conn = redis.Redis.from_url(url)
        phases = [[start * SCALE, rate / SCALE] for start, rate in PHASES]
        producer = subprocess.Popen([sys.executable, str(app / "producer.py"), url, repr(phases).replace("'", '"'),
                                     str(END * SCALE), "16"])
        t0 = float(wait_for("the producer's start", lambda: conn.get("t0"), 20))
        wait_for("the producer to finish", lambda: producer is not None and producer.poll() is not None,
                 END * SCALE + 30, interval=0.5)
        assert producer.returncode == 0
        events = [e for e in sb.events("worker", limit=5000) if e["kind"] == "autoscale" and "to" in e["details"]]
        changes = [((e["at"] - t0) / SCALE, int(e["details"]["from"]), int(e["details"]["to"])) for e in events]
        yield Record(sorted(changes), int(conn.get("sent") or 0), int(conn.get("done") or 0),
                     [e["message"] for e in events])
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
            producer.wait()
        sb.tear_down()
        redis_server.close()


def _show(record: Record) -> str:
    return "changes (platform s, from, to): " + ", ".join(f"{at:.0f}s {a}->{b}" for at, a, b in record.changes)


def test_a_steady_poisson_load_makes_at_most_2_changes_after_warm_up_and_no_reversal(record: Record) -> None:
    # the workers kept up: every job sent was done but those of the last moments
    bounds = (*PHASES, (END, 0.0))
    assert record.sent > 0.95 * sum(rate * (bounds[i + 1][0] - start) for i, (start, rate) in enumerate(PHASES))
    assert record.done >= record.sent - 20
    steady = record.between(WARM_UP, PHASES[1][0])
    assert len(steady) <= 2, _show(record)
    reversals = [(a[0], c[0]) for a, b, c in zip(steady, steady[1:], steady[2:], strict=False)
                 if a[2] > a[1] and b[2] < b[1] and c[2] > c[1] and c[0] - a[0] < 300.0]
    assert reversals == [], _show(record)
    # frugal as well as steady: about the need of 4 replica-equivalents, not the noise's high-water mark
    assert 5 <= record.count_at(PHASES[1][0]) <= 7, _show(record)


def test_a_step_load_is_followed_within_20s_up_and_the_window_plus_10s_down(record: Record) -> None:
    step_up, step_down = PHASES[1][0], PHASES[2][0]
    assert record.count_at(step_up) < 8, _show(record)  # following the step is the loop's doing
    up = record.first(step_up, lambda n: n >= 8)
    assert up is not None and up - step_up <= 20.0, _show(record)
    # down: the 300 s window holds the high load's count, then it falls to the low load's (2 replica-equivalents:
    # 3 to 5 in simulation) within the window + 10 s of the step
    down = record.first(step_down, lambda n: n <= 5)
    assert down is not None and down - step_down <= 310.0, _show(record)
    assert record.count_at(END) <= 5, _show(record)
