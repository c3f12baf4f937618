"""The work a poll hands to decide(): the mean of SAMPLES_PER_POLL reads spread evenly over the poll, not
one read at its end.

Why a mean is still "the work": `ready + due + in_flight` read at one instant is the work at that instant,
and under a steady Poisson load it is noise around its mean (Poisson-like: 40 jobs/s x 100 ms reads 4 +/- 2,
and 8 or more one read in twenty). The HPA sizes on that one number and its 300 s scale-down window keeps
the highest it saw, so one read's noise decides the count for five minutes: a steady 4-replica load held 7
to 12 replicas in simulation, and after a load fell to 2 replica-equivalents it came down only to 5-11. The
mean over the poll is the same quantity measured over the whole interval instead of at one point of it, as
the HPA's CPU metric is an average over its window rather than whether the CPU is busy right now; its mean
is the mean of the work (so it sizes the same), its noise is a third of one read's. A read costs 0.2-0.5 ms
on a local Redis, so ten per poll are still cheap.

At 0 replicas (not paused, min 0) the reads come at the same pace but are not averaged: a wake wants the
latest count, at once. `sample_until_wake` ends the poll at the first read that shows waiting work
(`ready + due > activation`, decide()'s wake) or that a push asked for, and hands decide() that one read; when
none does, the poll's last read ("asleep": one decision per poll, not one per read). Without push a job
enqueued to an idle service is so seen within poll / SAMPLES_PER_POLL instead of a whole poll.

At very small time scales (tests) there are as many samples as the loop can sleep between (MIN_SLEEP), down to
one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stackblaze.engine.autoscale.work import Work

SAMPLES_PER_POLL = 10


@dataclass(frozen=True)
class MeanWork:
    """The mean work of `samples` reads (each count to 2 decimals); `oldest_age` is the last read's, and
    `warnings` are every read's, once each (a warning seen in any read of the poll is a warning of the poll).
    `zero_for`: None when the last read found work, else how long the reads have found none (from the first
    of the trailing reads that were all 0 to the last), so that the idle clock starts when the work ended, not
    at the first poll whose every read was 0."""

    ready: float
    due: float
    in_flight: float
    oldest_age: float | None
    warnings: tuple[str, ...]
    samples: int
    zero_for: float | None

    @property
    def total(self) -> float:
        return self.ready + self.due + self.in_flight


def mean_work(reads: Sequence[Work], interval: float) -> MeanWork:
    """The mean of `reads` taken `interval` seconds apart."""
    if not reads:
        raise ValueError("mean_work: no reads")
    n = len(reads)
    warnings = tuple(dict.fromkeys(w for read in reads for w in read.warnings))
    zeros = next((i for i, read in enumerate(reversed(reads)) if read.total != 0), n)
    return MeanWork(ready=round(sum(r.ready for r in reads) / n, 2), due=round(sum(r.due for r in reads) / n, 2),
                    in_flight=round(sum(r.in_flight for r in reads) / n, 2), oldest_age=reads[-1].oldest_age,
                    warnings=warnings, samples=n, zero_for=(zeros - 1) * interval if zeros else None)


def sample_count(poll: float, time_scale: float, min_sleep: float) -> int:
    """How many reads fit in a poll: SAMPLES_PER_POLL, fewer when the poll is shorter in real seconds than
    SAMPLES_PER_POLL sleeps of `min_sleep` (a tiny time scale), at least 1."""
    return max(1, min(SAMPLES_PER_POLL, int(poll * time_scale / min_sleep)))


async def sample_work(read: Callable[[], Awaitable[Work]], *, poll: float, count: int, clock: Callable[[], float],
                      sleep: Callable[[float], Awaitable[None]]) -> MeanWork:
    """`count` reads at `poll / count` intervals of `clock`'s time from now (the first at once, the last at
    (count - 1) / count of the poll, so the caller's next poll starts one interval later); `sleep(seconds)`
    waits that long on the same clock. A read that fails ends the sampling: its error is the poll's."""
    began = clock()
    reads: list[Work] = []
    for i in range(count):
        wait = began + poll * i / count - clock()
        if wait > 0:
            await sleep(wait)
        reads.append(await read())
    return mean_work(reads, poll / count)


@dataclass(frozen=True)
class ZeroRead:
    """What a poll at 0 replicas hands decide(): one read (`work`), the `read`-th of the poll's `reads` (from
    1), and the push that asked for it (None when a read found waiting work or the poll ran out; "" is the
    listener's (re)subscription, which asks for a read without naming a push)."""

    work: Work
    read: int
    reads: int
    push: str | None

    def woke(self, activation: float) -> bool:
        """The read shows what wakes the service from 0 (decide()'s `ready + due > activation`)."""
        return self.work.ready + self.work.due > activation


async def sample_until_wake(read: Callable[[], Awaitable[Work]], *, poll: float, count: int, activation: float,
                            clock: Callable[[], float], sleep: Callable[[float], Awaitable[str | None]],
                            push: str | None = None) -> ZeroRead:
    """Up to `count` reads at `poll / count` intervals of `clock`'s time from now, as `sample_work` takes them,
    ending at the first that shows waiting work (`ready + due > activation`), else at the last. `sleep(seconds)`
    waits that long on the same clock, less when a push comes: it returns the push's hint (None: no push), and
    the read right after it ends the sampling whatever it shows (a push asks for an evaluation now). `push`: a
    push already heard, so the first read is that evaluation. A read that fails ends the sampling: its error is
    the poll's."""
    began = clock()
    for i in range(count):
        wait = began + poll * i / count - clock()
        if wait > 0:
            push = await sleep(wait)
        work = await read()
        result = ZeroRead(work, i + 1, count, push)
        if push is not None or result.woke(activation) or i == count - 1:
            return result
    raise ValueError("sample_until_wake: count < 1")
