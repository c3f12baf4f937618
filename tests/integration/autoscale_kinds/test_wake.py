"""Issue 16's wake matrix on a real daemon: a Celery priority task, a BullMQ prioritized job and a BullMQ delayed
job once due wake a worker idle at 0; a BullMQ job delayed into the future and a paused BullMQ queue do not; a
wrong queue name is an `autoscale-warning` within one poll, never a silent 0.

STACKBLAZE_TIME_SCALE=0.1 with spec durations ×10: poll 5s (the local default) is 0.5 s real, idle_after 10s is
1 s real."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from celery import Celery

from tests.integration.autoscale_kinds.kinds import bull
from tests.integration.autoscale_kinds.scaled import Scaled
from tests.integration.conftest import wait_for

SCALE = 0.1
POLL = 0.5  # real seconds
SPEC = "      min: 0\n      max: 2\n      poll: 5s\n      idle_after: 10s\n"
HOUR_MS = 3_600_000


def woken_by(worker: Scaled, job: int, since: float) -> float:
    """Seconds from `since` (monotonic) until a replica runs; then the job is waited for and the worker for 0."""
    wait_for(f"a replica woken for job {job}", lambda: worker.running() >= 1, 30, interval=0.05)
    latency = time.monotonic() - since
    wait_for(f"job {job} done", lambda: worker.count.sismember("done", job), 30, interval=0.05)
    wait_for("back to 0", lambda: not worker.replicas(), 30, interval=0.1)
    return latency


def still_asleep(worker: Scaled, since_wall: float, polls: int = 3) -> list[dict[str, object]]:
    """`polls` decisions made after `since_wall`, no replica started meanwhile; those decisions, newest first."""
    def made() -> list[dict[str, object]]:
        assert not worker.replicas(), f"woken: {worker.decisions(3)}"
        fresh = [d for d in worker.decisions(20) if float(d["at"]) > since_wall]  # type: ignore[arg-type]
        return fresh if len(fresh) >= polls else []

    return wait_for(f"{polls} polls at 0", made, 30, interval=0.1)  # type: ignore[no-any-return]


@pytest.mark.timeout(120)
def test_celery_a_priority_task_wakes_the_worker_and_a_wrong_queue_name_warns_within_one_poll(
        scaled: Callable[..., Scaled]) -> None:
    worker = scaled("celery", scale=SCALE, autoscale=SPEC, grace="200s", names=("orders", "ordres"), settle=False)
    first = wait_for("a first decision", lambda: worker.decisions(200)[-1:], 30)[0]
    (warning, *_) = wait_for("a warning naming ordres", lambda: [
        e for e in worker.events("autoscale-warning") if "'ordres'" in e["message"]], 30)
    late = warning["at"] - first["at"]
    print(f"\ncelery: the first poll's decision carries {first['warnings']}; warning event {late:+.2f}s after it: "
          f"{warning['message']}")
    assert any("celery queue 'ordres' not found" in w for w in first["warnings"]), first
    assert late <= POLL, f"the wrong name warned {late:.2f}s after the first poll (poll {POLL} s)"
    wait_for("settled at 0", lambda: not worker.replicas(), 30, interval=0.1)

    sent = time.monotonic()
    app = Celery("sender", broker=worker.broker.url)
    app.send_task("jobs.run", (7, 0.01), queue="orders", priority=9)
    app.close()
    assert worker.count.llen("orders\x06\x169") == 1  # kombu's list of priority 9, not the plain queue
    latency = woken_by(worker, 7, sent)
    wake = next(d for d in worker.decisions() if d["rule"] == "wake")
    print(f"celery: a priority-9 task woke the worker in {latency:.2f}s (decision: ready {wake['ready']})")
    assert worker.runs() == {7: 1} and wake["ready"] >= 1


@pytest.mark.timeout(120)
def test_bullmq_prioritized_and_due_delayed_jobs_wake_a_future_delayed_job_and_a_paused_queue_do_not(
        scaled: Callable[..., Scaled]) -> None:
    worker = scaled("bullmq", scale=SCALE, autoscale=SPEC, grace="200s", names=("work", "held"))
    quiet_from = time.time()
    bull(worker.kind, worker.broker, {"op": "pause", "queue": "held"}, {"op": "add", "queue": "held", "id": 1, "s": 0},
         {"op": "add", "queue": "work", "id": 2, "s": 0, "opts": {"delay": HOUR_MS}})
    asleep = still_asleep(worker, quiet_from)
    print(f"\nbullmq: {len(asleep)} polls with a paused queue's job and a job due in an hour, still at 0: "
          + "; ".join(f"{d['rule']} ready {d['ready']} due {d['due']}" for d in asleep))
    assert all(d["rule"] == "asleep" and d["ready"] == 0 and d["due"] == 0 for d in asleep), asleep
    assert any("'held' is paused" in w for w in asleep[0]["warnings"]), asleep[0]  # type: ignore[union-attr]

    sent = time.monotonic()
    bull(worker.kind, worker.broker, {"op": "add", "queue": "work", "id": 3, "s": 0.01, "opts": {"priority": 5}})
    prioritized = woken_by(worker, 3, sent)

    sent = time.monotonic()
    added = time.time()
    bull(worker.kind, worker.broker, {"op": "add", "queue": "work", "id": 4, "s": 0.01, "opts": {"delay": 1000}})
    due = woken_by(worker, 4, sent)
    wake = next(d for d in worker.decisions() if d["rule"] == "wake")
    print(f"bullmq: a prioritized job woke the worker in {prioritized:.2f}s; a job delayed 1 s woke it "
          f"{due:.2f}s after it was added (wake decision {wake['at'] - added:.2f}s after, due {wake['due']}, "
          f"ready {wake['ready']})")
    assert float(wake["at"]) >= added + 1.0 and wake["due"] == 1, f"woken before the job was due: {wake}"
    assert worker.runs() == {3: 1, 4: 1}  # the paused queue's job and the future one never ran
