"""Issue 16's "grace too short" acceptance per queue kind, on a real daemon with the kind's real library and
broker: two replicas each busy with a 5 s job, `scale --auto` sizes them to 1 (2 jobs, target 2), the busy victim
outlives its shutdown_grace and is SIGKILLed; a `drain-killed` event names it, and the library hands the job it held
to the survivor, which completes it: started twice, completed once, every job done exactly once.

Each library hands back a dead worker's job by its own clock, configured here as a user would (README, "when a
replica is killed mid-job"), with the library's timeouts short for the test:
- BullMQ: the job's lock expires (`lockDuration`) and the survivor's stalled check (`stalledInterval`) moves it
  back to wait (`maxStalledCount` 1, the default: a second stall fails it).
- NATS JetStream: the consumer's `ack_wait` runs out and the next pull gets it again (the survivor's pull, once its
  own job is done: one job at a time). A job longer than ack_wait must say `in_progress()` (kinds.py's worker
  does, every ack_wait / 3), else a live worker's job comes back too.
- dramatiq (Redis): the dead worker's heartbeat is older than `heartbeat_timeout` and a live worker's call on the
  queue draws maintenance (`maintenance_chance` per million calls; every call here). With `dramatiq_queue_prefetch=1`
  (each replica takes one job, so both are busy) the survivor calls on the queue again only when its own job is
  done. A worker's delay-queue consumer keeps its heartbeat fresh while it works, so the timeout need not exceed a job.
- RQ: only a job enqueued with `Retry` comes back (without one it is failed with AbandonedJobError); it comes back
  when its execution's heartbeat has expired, job_monitoring_interval + 60 s after the last one (the 60 s is fixed
  in rq 3.0), and a worker's maintenance runs (`maintenance_interval`, 600 s by default; an idle worker looks only
  between BLPOPs of worker_ttl - 15 s). So this kind takes a minute of real time.
- Celery on Redis (`task_acks_late`, as examples/celery-orders): the task stays in kombu's `unacked` hash, and a
  worker restores it to the queue once it is older than `visibility_timeout` (3 s here), but kombu 5.5 looks only
  when a worker starts and on every 10th of its 10 s cycles (~100 s, not configurable). Meanwhile the autoscaler
  counts it in flight and keeps a replica for it. So this kind takes up to two minutes of real time.
RabbitMQ is test_failures.py's.

Time: STACKBLAZE_TIME_SCALE=0.1, spec durations ×10: grace 10s and poll 10s are 1 s real; the jobs are 5 s real."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis

from tests.integration.autoscale_kinds.scaled import Scaled
from tests.integration.conftest import wait_for

SCALE = 0.1
JOB = 5.0  # real seconds: the scale-down, the grace and the kill all fall within it
SPEC = ("      min: 0\n      max: 2\n      poll: 10s\n      idle_after: 100s\n      target_per_replica: 2\n"
        f"      scale_down: {{window: 0s}}\n      busy_probe: {sys.executable} busy.py\n")


@dataclass(frozen=True)
class Redelivery:
    """What a kind needs to hand back a killed worker's job within the test: the worker's env, NATS's ack_wait,
    and how long after the kill the job may take to be done."""

    env: dict[str, str] = field(default_factory=dict)
    ack_wait: float = 60
    within: float = 30


KINDS = {
    "bullmq": Redelivery({"BULL_LOCK_DURATION_MS": "2000", "BULL_STALLED_INTERVAL_MS": "1000"}),
    "nats": Redelivery(ack_wait=2),
    "dramatiq": Redelivery({"dramatiq_queue_prefetch": "1", "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "3000",
                            "DRAMATIQ_MAINTENANCE_CHANCE": "1000000"}),
    "rq": Redelivery({"RQ_MAINTENANCE_INTERVAL": "1", "RQ_JOB_MONITORING_INTERVAL": "1", "RQ_WORKER_TTL": "16"},
                     within=90),
    "celery": Redelivery({"VISIBILITY_TIMEOUT": "3"}, within=150),
}


def holders(worker: Scaled) -> dict[int, int]:
    """replica -> the job it runs now (jobs.py notes it; a killed replica's note stays)."""
    return {int(k): int(v) for k, v in worker.count.hgetall("holder").items()}


def starts(worker: Scaled) -> dict[int, int]:
    """job id -> times it started."""
    return {int(k): int(v) for k, v in worker.count.hgetall("starts").items()}


def enqueue(worker: Scaled, ids: list[int], seconds: float) -> dict[int, str]:
    """With the kind's library (an RQ job with `Retry(max=1)`, as a user who wants it back must enqueue it); each
    job's name in the daemon's report: RQ's job id, else what the busy_probe prints (the test's id)."""
    if worker.kind.name != "rq":
        worker.enqueue(ids, seconds)
        return {i: str(i) for i in ids}
    from rq import Queue, Retry

    queue = Queue(worker.kind.queue, connection=redis.Redis.from_url(worker.broker.url))
    return {i: queue.enqueue("jobs.run", i, seconds, job_timeout=3600, retry=Retry(max=1)).id for i in ids}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_busy_replica_killed_after_a_too_short_grace_is_reported_and_its_job_redelivered_and_done_once(
        kind: str, scaled: Callable[..., Scaled]) -> None:
    """Not settled at 0 first: the manual scale to 2 pauses the loop straight away. idle_after is 10 s real, twice a
    job: nothing here should go to 0."""
    redelivery = KINDS[kind]
    worker = scaled(kind, scale=SCALE, grace="10s", settle=False, autoscale=SPEC, env=redelivery.env,
                    ack_wait=redelivery.ack_wait)
    worker.sb.run("scale", "worker", "--replicas", "2")
    wait_for("2 replicas", lambda: worker.running() == 2, 60, interval=0.1)
    names = enqueue(worker, [1, 2], JOB)
    wait_for("both replicas busy", lambda: len(holders(worker)) == 2, 30, interval=0.1)
    held = holders(worker)
    worker.sb.run("scale", "worker", "--auto")  # 2 jobs / target 2 = 1 replica: a busy one must go
    (killed,) = wait_for("a drain-killed event", lambda: worker.events("drain-killed"), 30, interval=0.1)
    victim = killed["replica"]
    (survivor,) = set(held) - {victim}
    job = held[victim]
    (exit_,) = [e for e in worker.events("exit") if e["replica"] == victim]
    again = wait_for(f"job {job} started again", lambda: starts(worker).get(job, 0) >= 2 and time.time(),
                     redelivery.within, interval=0.1)
    wait_for("both jobs done", lambda: worker.done() == 2, redelivery.within, interval=0.1)
    done = time.time()
    print(f"\n{kind}: {killed['message']}; it held job {job}; from the SIGKILL: started again by worker.{survivor} "
          f"{again - exit_['at']:.1f}s, done {done - exit_['at']:.1f}s; starts {starts(worker)}, runs {worker.runs()}")
    assert exit_["details"].get("killed_after_grace"), exit_
    assert f"worker.{victim} killed after its 10s shutdown_grace" in killed["message"]
    source = "rq" if kind == "rq" else "busy_probe"  # RQ's executions name the job, else the probe's line
    assert f"holding 1 job ({names[job]}) (busy data: {source})" in killed["message"], killed["message"]
    assert killed["details"]["job_ids"] == [names[job]]
    (change,) = [e for e in worker.events("autoscale") if e["details"].get("to") == 1]
    assert change["details"]["victims"] == [victim] and f"worker.{victim} (busy)" in change["message"]
    assert starts(worker) == {1: 1, 2: 1} | {job: 2}  # the killed job ran again ...
    assert worker.runs() == {1: 1, 2: 1}  # ... and each job completed once
    assert worker.count.hget("by", job) == str(survivor).encode()  # by the replica left
    assert worker.running() == 1 and not [e for e in worker.kills() if e["replica"] != victim]
