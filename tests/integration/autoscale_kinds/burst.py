"""Issue 16's burst, run once on a deployed worker idle at 0, with the timeline it produced: the test
(test_burst.py) asserts its behaviour, bench/autoscale_burst.py reports its speed against the issue's bounds.

Every figure is real seconds from the first enqueue (the burst is sent from a thread, so that the wake is timed
from the first job, not from the last one of a long send)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.integration.autoscale_kinds.scaled import Clock, Scaled, at_zero_for_the_up_window
from tests.integration.conftest import wait_for


@dataclass
class Burst:
    kind: str
    scale: float
    jobs: int
    enqueued: float = 0.0  # the last job sent
    woke: float = 0.0  # a replica running
    first_job: float = 0.0  # a job started
    full: float | None = None  # `top` replicas running, if they ever were
    peak: int = 0
    finished: float = 0.0  # every job done
    to_zero: float = 0.0  # from `finished` to no replica at all
    runs: dict[int, int] = field(default_factory=dict)  # job id -> times it completed
    replicas_used: int = 0  # replicas that ran a job
    kills: list[dict[str, Any]] = field(default_factory=list)
    steps: list[tuple[int, int, float]] = field(default_factory=list)  # autoscale changes: from, to, at (s)
    long_job_desired: list[int] = field(default_factory=list)  # the desired count sampled while the long job ran

    @property
    def lost(self) -> int:
        return sum(1 for i in range(self.jobs) if i not in self.runs)

    @property
    def repeated(self) -> int:
        return sum(1 for i, v in self.runs.items() if v > 1 and i >= 0)

    def __str__(self) -> str:
        steps = ", ".join(f"{a}->{b} at {at:.1f}s" for a, b, at in self.steps)
        return (f"{self.kind} (time scale {self.scale:g}, {self.jobs} jobs of 10 ms): enqueued in "
                f"{self.enqueued:.2f}s, first replica running {self.woke:.2f}s, first job started "
                f"{self.first_job:.2f}s, peak {self.peak}"
                + (f" (reached at {self.full:.2f}s)" if self.full is not None else "")
                + f", all done {self.finished:.2f}s by {self.replicas_used} replicas, {self.lost} lost, "
                f"{self.repeated} repeated, back to 0 {self.to_zero:.2f}s after the last, {len(self.kills)} SIGKILLs"
                f"; autoscaled {steps}"
                + (f"; desired while the long job ran: {sorted(set(self.long_job_desired))}"
                   if self.long_job_desired else ""))


class Unfinished(AssertionError):
    """Not every job was done within the deadline: the burst so far, with the jobs that did run."""

    def __init__(self, found: Burst) -> None:
        super().__init__(f"{found}: not every job done ({found.lost} never ran)")
        self.burst = found


def burst(worker: Scaled, jobs: int, top: int, *, seconds: float = 0.01, long_job: float = 0.0,
          done_within: float = 120.0, zero_within: float = 60.0) -> Burst:
    """`jobs` jobs of `seconds` sent to `worker`, idle at 0, once it has sat at 0 for the scale-up window; watched
    until every job is done and the worker is back to 0. `top`: the replica count whose arrival is timed (max).

    `long_job` (s): one more job (id -1) sent after the burst, so that it starts once every other job is taken and
    is then the only work, in flight, for its whole length: the desired count is sampled while it runs."""
    at_zero_for_the_up_window(worker)
    found = Burst(worker.kind.name, worker.scale, jobs)
    clock, wall = Clock(), time.time()

    def send() -> float:
        worker.enqueue(range(jobs), seconds)
        at = clock()
        if long_job:
            worker.enqueue([-1], long_job)
        return at

    with ThreadPoolExecutor(1) as sending:
        sent = sending.submit(send)
        wait_for("a replica woken", lambda: worker.running() >= 1, 30, interval=0.05)
        found.woke = clock()
        wait_for("a first job started", lambda: worker.size("started") > 0, 30, interval=0.05)
        found.first_job = clock()

        def at_top_or_done() -> bool:
            found.peak = max(found.peak, worker.running())
            return found.peak >= top or worker.done() >= jobs

        wait_for(f"{top} replicas running or every job done", at_top_or_done, done_within, interval=0.1)
        found.full = clock() if found.peak >= top else None
        found.enqueued = sent.result(timeout=done_within)
    total = jobs + (1 if long_job else 0)

    def all_done() -> bool:
        if long_job and worker.has("started", -1) and not worker.has("done", -1):
            found.long_job_desired.append(worker.service()["desired"])
        return worker.done() == total

    try:
        wait_for("every job done", all_done, done_within + 2 * long_job, interval=0.1)
    except AssertionError:
        found.runs = worker.runs()
        raise Unfinished(found) from None
    found.finished = clock()
    wait_for("back to 0", lambda: not worker.replicas(), zero_within, interval=0.1)
    found.to_zero = clock() - found.finished
    found.runs = worker.runs()
    found.replicas_used = len(worker.ran_by())
    found.kills = worker.kills()
    found.steps = sorted(((e["details"]["from"], e["details"]["to"], e["at"] - wall) for e in worker.events("autoscale")
                          if "to" in e["details"] and e["at"] > wall), key=lambda step: step[2])
    return found
