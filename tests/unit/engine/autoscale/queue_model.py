"""A tiny deterministic queue for simulating the autoscaler: jobs arrive at given times with a service time,
replicas are servers that boot for `boot` seconds and then take one job at a time (FIFO), and a stopped
replica finishes its job and leaves (a graceful drain). It is a model of the policy's world, not of a broker:
the real-broker acceptance tests come with the engine integration."""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from stackblaze.engine.autoscale.decide import LoopState, decide
from stackblaze.engine.autoscale.decisions import Decision
from stackblaze.engine.autoscale.sampling import SAMPLES_PER_POLL, MeanWork, mean_work
from stackblaze.engine.autoscale.victims import ReplicaInfo, choose_victims
from stackblaze.engine.autoscale.work import ReadError, Work
from stackblaze.spec.autoscale import Autoscale


@dataclass
class _Replica:
    index: int
    ready_at: float
    job_until: float | None = None  # busy until then
    job_started_at: float | None = None  # when its current job started
    draining: bool = False


@dataclass
class QueueModel:
    boot: float = 1.0
    replicas: dict[int, _Replica] = field(default_factory=dict)
    queue: deque[tuple[float, float]] = field(default_factory=deque)  # (arrived at, service time)
    done: int = 0
    last_done_at: float | None = None
    _arrivals: list[tuple[float, float]] = field(default_factory=list)
    _next: int = 0
    _events: list[tuple[float, int, int]] = field(default_factory=list)  # (when, seq, replica index)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    now: float = 0.0

    def add_jobs(self, jobs: Iterable[tuple[float, float]]) -> None:
        """(arrival time, service seconds) pairs, any order."""
        self._arrivals = sorted([*self._arrivals[self._next:], *jobs])
        self._next = 0

    @property
    def active(self) -> int:
        return sum(1 for r in self.replicas.values() if not r.draining)

    @property
    def running(self) -> int:
        """Replicas that have booted and not left (draining ones included: they still work)."""
        return sum(1 for r in self.replicas.values() if r.ready_at <= self.now)

    def read(self) -> Work:
        in_flight = sum(1 for r in self.replicas.values() if r.job_until is not None)
        oldest = self.now - self.queue[0][0] if self.queue else None
        return Work(ready=len(self.queue), due=0, in_flight=in_flight, oldest_age=oldest)

    def scale(self, count: int, prefer: str = "idle") -> list[int]:
        """Start replicas on the lowest free indexes, or drain the chosen victims; the victims' indexes."""
        while self.active < count:
            index = next(i for i in itertools.count(1) if i not in self.replicas)
            self.replicas[index] = _Replica(index, self.now + self.boot)
            heapq.heappush(self._events, (self.now + self.boot, next(self._seq), index))
        victims: list[int] = []
        if self.active > count:
            infos = [ReplicaInfo(r.index, r.job_until is not None, r.draining) for r in self.replicas.values()]
            victims = choose_victims(infos, self.active - count, "idle" if prefer == "idle" else "highest")
            for index in victims:
                replica = self.replicas[index]
                replica.draining = True
                if replica.job_until is None:
                    del self.replicas[index]
        return victims

    def advance(self, to: float) -> None:
        while True:
            arrival = self._arrivals[self._next][0] if self._next < len(self._arrivals) else float("inf")
            event = self._events[0][0] if self._events else float("inf")
            when = min(arrival, event)
            if when > to:
                break
            self.now = when
            if arrival <= event:
                self.queue.append(self._arrivals[self._next])
                self._next += 1
            else:
                _, _, index = heapq.heappop(self._events)
                replica = self.replicas.get(index)
                if replica is not None and replica.job_until is not None and replica.job_until <= when:
                    self.done += 1
                    self.last_done_at = when
                    replica.job_until = None
                    if replica.draining:
                        del self.replicas[index]
            self._dispatch()
        self.now = to

    def _dispatch(self) -> None:
        if not self.queue:
            return
        for replica in sorted(self.replicas.values(), key=lambda r: r.index):
            if not self.queue:
                return
            if replica.draining or replica.job_until is not None or replica.ready_at > self.now:
                continue
            _, service = self.queue.popleft()
            replica.job_until = self.now + service
            replica.job_started_at = self.now
            heapq.heappush(self._events, (replica.job_until, next(self._seq), replica.index))


@dataclass
class Run:
    """The result of a simulation: every decision, and the replica count over time as (time, count)."""

    decisions: list[Decision]
    counts: list[tuple[float, int]]
    model: QueueModel
    state: LoopState

    def changes(self, after: float = float("-inf"), before: float = float("inf")) -> list[tuple[float, int, int]]:
        """(time, from, to) for every change of the desired count in (after, before]."""
        return [(d.at, d.current, d.desired) for d in self.decisions
                if d.desired != d.current and after < d.at <= before]

    def first_time(self, predicate: Callable[[int], bool], after: float = float("-inf")) -> float | None:
        """The first poll after `after` whose replica count satisfies `predicate`."""
        return next((at for at, count in self.counts if at > after and predicate(count)), None)

    def count_at(self, when: float) -> int:
        return [count for at, count in self.counts if at <= when][-1]


def simulate(spec: Autoscale, model: QueueModel, *, until: float, start: float = 0.0, target: int = 1,
             state: LoopState | None = None, down: tuple[float, float] | None = None,
             samples: int = SAMPLES_PER_POLL) -> Run:
    """Poll every `spec.poll` seconds from `start` to `until`: advance the queue, read it (a ReadError while
    `down` = (from, to) holds), decide, and apply the decision to the model at once.

    With replicas, as the daemon reads (sampling.py): the mean of `samples` reads spread evenly over the interval
    since the last poll, the last one at the poll (samples=1: one read, the HPA's way). At 0 replicas one read at
    the poll, where the daemon reads `samples` times and wakes at the first read that sees work
    (sample_until_wake): a simulated wake is the latest the daemon's can be."""
    state = state or LoopState()
    decisions: list[Decision] = []
    counts: list[tuple[float, int]] = []
    now = start
    while now <= until + 1e-9:
        failed = down is not None and down[0] <= now < down[1]
        reading: Work | MeanWork | ReadError
        if failed:
            model.advance(now)
            reading = ReadError("cannot read redis://127.0.0.1:6379/0: connection refused")
        elif model.active == 0 or samples == 1 or now == start:
            model.advance(now)
            reading = model.read()
        else:
            reads = []
            for i in range(samples):
                model.advance(now - spec.poll * (samples - 1 - i) / samples)
                reads.append(model.read())
            reading = mean_work(reads, spec.poll / samples)
        decision, state = decide(spec, state, reading, current=model.active, target=target, now=now)
        decisions.append(decision)
        if decision.desired != model.active:
            model.scale(decision.desired, spec.scale_down.prefer)
        counts.append((now, model.active))
        now = round(now + spec.poll, 9)
    return Run(decisions, counts, model, state)


def poisson(rate: float, service: float, start: float, end: float, seed: int) -> list[tuple[float, float]]:
    """Arrivals of a Poisson process of `rate` jobs/s in [start, end), each taking `service` seconds."""
    rng = random.Random(seed)
    jobs, t = [], start
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            return jobs
        jobs.append((t, service))
