"""Issue 16's acceptance, burst and long job, per queue kind, on a real daemon with the kind's real library and
broker: idle at 0, a burst of ~10 ms jobs wakes the worker, grows it to max 8, every job runs exactly once
(counted in Redis) and the worker goes back to 0 with no SIGKILL; then a job longer than idle_after is never cut.

Time: redis-list runs the issue's 10,000 jobs at STACKBLAZE_TIME_SCALE=1 (poll 1s, idle_after 3s, the default
scale-up behaviour: a 10 s window, 4 pods or 100% per 15 s), so every bound is the issue's in real seconds. The
other kinds run at STACKBLAZE_TIME_SCALE=0.1 with the issue's idle_after 10s and poll 10s (1 s real each): the
loop polls and idles in real seconds as the bounds assume, but the scale-up window and policy period shrink
tenfold too (1 s and 1.5 s real), so 8 replicas come sooner and a smaller burst (BURSTS) keeps them busy long
enough to be seen; and the issue's 60 s job is a 6 s one, still six times idle_after. The bounds asserted are
the issue's, in real seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from stackblaze.spec.autoscale import SCALE_UP
from tests.integration.autoscale_kinds.conftest import Clock, Scaled
from tests.integration.conftest import wait_for

# kind: (time scale, jobs). 10,000 where a replica takes a job in ~1 ms besides its 10 ms; fewer where the library
# costs more per job on this 2-core machine (RQ forks a work-horse per job, Celery and dramatiq ~5-10 ms of
# bookkeeping), sized so that 8 replicas still have work when they are up and each test stays well under a minute.
BURSTS: dict[str, tuple[float, int]] = {
    "redis-list": (1.0, 10_000),
    "bullmq": (0.1, 3_000),
    "rq": (0.1, 600),
    "celery": (0.1, 2_000),
    "dramatiq": (0.1, 2_000),
    "rabbitmq": (0.1, 2_000),
    "nats": (0.1, 2_000),
}
IDLE_AFTER = {1.0: 3.0, 0.1: 1.0}  # real seconds by time scale: idle_after 3s at scale 1, 10s (the issue's) at 0.1
MAX = 8


def spec(scale: float) -> str:
    x = 1 / scale  # platform seconds per real second
    return f"      min: 0\n      max: {MAX}\n      poll: {1 * x:g}s\n      idle_after: {IDLE_AFTER[scale] * x:g}s\n"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", list(BURSTS))
def test_a_burst_wakes_the_worker_grows_to_max_runs_every_job_once_and_goes_back_to_zero_a_long_job_is_not_cut(
        kind: str, scaled: Callable[..., Scaled]) -> None:
    scale, jobs = BURSTS[kind]
    idle_after = IDLE_AFTER[scale]
    worker = scaled(kind, scale=scale, autoscale=spec(scale), grace=f"{20 / scale:g}s")
    at_zero_for_the_up_window(worker, scale)
    clock, wall = Clock(), time.time()
    # Enqueued from a thread, so that the wake is timed from the first job, not from the last one of a long send.
    sending = ThreadPoolExecutor(1)
    sent = sending.submit(lambda: (worker.enqueue(range(jobs), 0.01), clock())[1])
    wait_for("a replica woken", lambda: worker.running() >= 1, 30, interval=0.05)
    woke = clock()
    wait_for("a first job started", lambda: worker.count.scard("started") > 0, 30, interval=0.05)
    first_job = clock()
    peak = 0

    def at_max() -> bool:
        nonlocal peak
        peak = max(peak, worker.running())
        return peak == MAX or worker.done() == jobs

    wait_for(f"{MAX} replicas running", at_max, 60, interval=0.1)
    full = clock() if peak == MAX else None
    enqueued = sent.result(timeout=120)
    sending.shutdown()
    wait_for("every job done", lambda: worker.done() == jobs, 120, interval=0.1)
    finished = clock()
    wait_for("back to 0", lambda: not worker.replicas(), 60, interval=0.1)
    to_zero = clock() - finished

    runs = worker.runs()
    workers = {v.decode() for v in worker.count.hvals("by")}
    steps = ", ".join(f"{e['details']['from']}->{e['details']['to']} at {e['at'] - wall:.1f}s"
                      for e in worker.events("autoscale") if "to" in e["details"] and e["at"] > wall)
    figures = (f"{kind} (time scale {scale:g}, {jobs} jobs of 10 ms): enqueued in {enqueued:.2f}s, first replica "
               f"running {woke:.2f}s, first job started {first_job:.2f}s, {MAX} running "
               + (f"{full:.2f}s" if full is not None else f"never (peak {peak})")
               + f", all done {finished:.2f}s by {len(workers)} replicas, back to 0 {to_zero:.2f}s after the last"
               + f"; autoscaled {steps}")
    print("\n" + figures)
    assert len(runs) == jobs and set(runs.values()) == {1}, \
        f"{figures}: {jobs - len(runs)} jobs never ran, {sum(1 for v in runs.values() if v > 1)} ran twice"
    kills = worker.kills()
    assert not kills, f"{figures}: SIGKILLs: {[e['message'] for e in kills]}"
    assert full is not None and full <= 25.0, f"{figures}: not {MAX} replicas within 25 s"
    # RabbitMQ's management API reports unacked messages ~3 s late (its stats interval), and AMQP cannot count
    # them: the idle clock starts that much late, which puts it at the bound. A known gap (issue 16's note), kept
    # visible as an xfail when it misses, every other line still asserted.
    late = to_zero > idle_after + 5.0
    assert not late or kind == "rabbitmq", f"{figures}: not back to 0 within idle_after + 5 s"
    if scale == 0.1:  # redis-list: a plain list cannot show a popped job (its reader warns so): it would be cut
        a_long_job_is_never_cut(worker, idle_after)
    assert woke <= 3.0, f"{figures}: the first replica later than 3 s after the burst"
    if late:
        pytest.xfail(f"{figures}: not back to 0 within idle_after + 5 s (the management API's unacked lag)")


def at_zero_for_the_up_window(worker: Scaled, scale: float) -> None:
    """Idle at 0 means sat at 0: the scale-up window holds the lowest recommendation it saw, and the ones made
    as the deploy's replica went to 0 (1 replica for no work) would hold a burst that comes within the window at
    1 replica (measured: 8 replicas at 24.6 s instead of ~17 s at time scale 1), as the HPA's window does."""
    window = SCALE_UP.window * scale
    last = next(d for d in worker.decisions() if d["current"] > 0)  # newest first
    wait_for("the worker at 0 for the scale-up window", lambda: time.time() - last["at"] > window, window + 10)


def a_long_job_is_never_cut(worker: Scaled, idle_after: float) -> None:
    """The issue's 60 s job with idle_after 10s, at time scale 0.1: a 6 s job, six times idle_after (1 s real)."""
    clock = Clock()
    worker.enqueue([-1], 6.0)
    wait_for("the long job started", lambda: worker.count.sismember("started", -1), 30, interval=0.05)
    started = clock()
    lowest = MAX
    while not worker.count.sismember("done", -1):
        lowest = min(lowest, len(worker.replicas()))
        assert lowest >= 1, f"{worker.kind.name}: scaled to 0 with the job in flight, {clock() - started:.2f}s into it"
        assert clock() < 30, f"{worker.kind.name}: the 6 s job not done after 30 s"
        time.sleep(0.05)
    ran = clock() - started
    wait_for("back to 0 after the long job", lambda: not worker.replicas(), 30, interval=0.1)
    print(f"{worker.kind.name}: a {ran:.2f}s job (idle_after {idle_after:g} s real) kept {lowest}+ replica(s) "
          f"throughout; back to 0 {clock() - started - ran:.2f}s after it")
    assert worker.count.hget("runs", -1) == b"1" and not worker.kills()
