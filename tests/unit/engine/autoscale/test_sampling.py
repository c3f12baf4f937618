"""The poll's mean of reads (sampling.py): what decide() sizes on, when the idle clock starts, how many reads a
poll takes and when; and at 0 replicas, the read that ends the poll to wake the service. Pure functions, an
asyncio loop on a real clock or on a Timeline clock; no broker (the real-process tests of the daemon's sampling
are tests/integration/test_autoscale_steady.py and tests/integration/autoscale_wake/test_poll_wake.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from stackblaze.engine.autoscale.decide import LoopState, decide
from stackblaze.engine.autoscale.decisions import explain
from stackblaze.engine.autoscale.sampling import (
    SAMPLES_PER_POLL,
    mean_work,
    sample_count,
    sample_until_wake,
    sample_work,
)
from stackblaze.engine.autoscale.work import ReadError, Work
from stackblaze.spec.autoscale import Autoscale, Queues

SPEC = Autoscale(min=0, max=20, queues=Queues("rq", "redis://127.0.0.1:6379/0", ("default",)), idle_after=20.0)


def work(total: int, warnings: tuple[str, ...] = ()) -> Work:
    return Work(ready=0, due=0, in_flight=total, oldest_age=None, warnings=warnings)


def test_the_mean_sizes_the_count_and_keeps_every_warning_once() -> None:
    reads = [work(n) for n in (3, 5, 4, 4, 6, 2, 4, 5)] + [work(4, ("a",)), work(3, ("a", "b"))]
    mean = mean_work(reads, 0.5)
    assert (mean.in_flight, mean.samples, mean.warnings, mean.zero_for) == (4.0, 10, ("a", "b"), None)
    decision, _ = decide(SPEC, LoopState(), mean, current=8, target=1, now=100.0)
    assert decision.raw == 4 and decision.in_flight == 4.0
    odd = mean_work([work(1), work(2), work(2)], 0.5)  # 1.67: ceil 2, shown as a mean
    decision, _ = decide(SPEC, LoopState(), odd, current=4, target=1, now=100.0)
    assert decision.raw == 2 and "in flight 1.67" in explain([decision])[0]


def test_the_idle_clock_starts_at_the_first_of_the_trailing_reads_that_found_no_work() -> None:
    ended = mean_work([work(1)] * 6 + [work(0)] * 4, 0.5)  # the work ended between the 6th and 7th read
    assert ended.zero_for == 1.5 and ended.in_flight == 0.6
    _, state = decide(SPEC, LoopState(), ended, current=1, target=1, now=100.0)
    assert state.idle_since == 98.5
    quiet = mean_work([work(0)] * 10, 0.5)
    _, state = decide(SPEC, state, quiet, current=1, target=1, now=105.0)
    assert state.idle_since == 98.5  # still idle: the clock runs on
    blip = mean_work([work(0)] * 4 + [work(1)] + [work(0)] * 5, 0.5)  # a job came and went within the poll
    _, state = decide(SPEC, state, blip, current=1, target=1, now=110.0)
    assert state.idle_since == 108.0
    busy = mean_work([work(0)] * 9 + [work(1)], 0.5)
    _, state = decide(SPEC, state, busy, current=1, target=1, now=115.0)
    assert state.idle_since is None
    decision, _ = decide(SPEC, LoopState(idle_since=80.0), quiet, current=1, target=1, now=100.0)
    assert decision.desired == 0 and decision.rule == "to-zero"


@pytest.mark.parametrize(("poll", "scale", "expected"), [
    (5.0, 1.0, SAMPLES_PER_POLL), (5.0, 0.1, SAMPLES_PER_POLL), (1.0, 0.1, SAMPLES_PER_POLL), (5.0, 0.01, 5),
    (1.0, 0.01, 1), (0.5, 0.01, 1)])
def test_a_poll_takes_as_many_reads_as_the_loop_can_sleep_between(poll: float, scale: float, expected: int) -> None:
    assert sample_count(poll, scale, 0.01) == expected


def test_reads_are_spread_over_the_poll_and_a_failed_one_is_the_polls_error() -> None:
    async def run() -> tuple[list[float], float]:
        stamps: list[float] = []

        async def read() -> Work:
            stamps.append(time.monotonic())
            return work(len(stamps))

        began = time.monotonic()
        mean = await sample_work(read, poll=0.5, count=5, clock=time.monotonic, sleep=asyncio.sleep)
        assert mean.in_flight == 3.0
        return [t - began for t in stamps], time.monotonic() - began

    stamps, took = asyncio.run(run())
    assert [round(t, 1) for t in stamps] == [0.0, 0.1, 0.2, 0.3, 0.4]  # the first at once, the last at 4/5
    assert took < 0.48

    async def failing() -> None:
        calls = 0

        async def read() -> Work:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise ReadError("cannot read redis://127.0.0.1:6379/0: connection refused")
            return work(1)

        with pytest.raises(ReadError, match="connection refused"):
            await sample_work(read, poll=0.2, count=10, clock=time.monotonic, sleep=asyncio.sleep)
        assert calls == 3

    asyncio.run(failing())


class Timeline:
    """A clock whose `sleep` moves it on (what the loop's platform clock and the Waker's sleep do, without the
    waiting), with the pushes a listener would hear: `pushes[t]` cuts the sleep that spans t short at t."""

    def __init__(self, queue: dict[float, Work], pushes: dict[float, str] | None = None) -> None:
        self.now = 0.0
        self.queue = queue  # from each time on, what a read finds
        self.pushes = dict(pushes or {})
        self.reads: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> str | None:
        until = self.now + seconds
        heard = min((t for t in self.pushes if self.now < t <= until), default=None)
        if heard is not None:
            self.now = heard
            return self.pushes.pop(heard)
        self.now = until
        return None

    async def read(self) -> Work:
        self.reads.append(round(self.now, 6))
        return self.queue[max(t for t in self.queue if t <= self.now)]


def ready(n: int, in_flight: int = 0) -> Work:
    return Work(ready=n, due=0, in_flight=in_flight, oldest_age=None)


def test_at_zero_the_poll_ends_at_the_first_read_that_shows_waiting_work_and_that_read_wakes_it() -> None:
    line = Timeline({0.0: ready(0), 2.2: ready(1)})  # enqueued 2.2 s into a 10 s poll
    zero = asyncio.run(sample_until_wake(line.read, poll=10.0, count=10, activation=0, clock=line.clock,
                                         sleep=line.sleep))
    assert line.reads == [0.0, 1.0, 2.0, 3.0]  # seen 0.8 s after the enqueue, not at the next poll (10 s)
    assert (zero.read, zero.reads, zero.push, zero.work.ready) == (4, 10, None, 1)
    decision, _ = decide(SPEC, LoopState(), zero.work, current=0, target=1, now=3.0)
    assert (decision.rule, decision.desired) == ("wake", 1)


def test_at_zero_a_poll_without_waiting_work_decides_once_with_its_last_read() -> None:
    # In flight at 0 (a job a stopped replica left unacknowledged) and ready at the activation do not wake.
    spec = replace(SPEC, activation=2)
    line = Timeline({0.0: ready(0), 3.0: ready(2, in_flight=1)})
    zero = asyncio.run(sample_until_wake(line.read, poll=10.0, count=10, activation=spec.activation,
                                         clock=line.clock, sleep=line.sleep))
    assert line.reads == [float(n) for n in range(10)] and line.now == 9.0  # the caller sleeps the last 1 s
    assert (zero.read, zero.reads, zero.push) == (10, 10, None) and not zero.woke(spec.activation)
    decision, _ = decide(spec, LoopState(), zero.work, current=0, target=1, now=9.0)
    assert (decision.rule, decision.desired) == ("asleep", 0)


def test_a_push_ends_the_poll_at_once_with_one_read_whatever_it_shows() -> None:
    line = Timeline({0.0: ready(0)}, pushes={4.5: "bullmq waiting job 1"})  # e.g. a job added to a paused queue
    zero = asyncio.run(sample_until_wake(line.read, poll=10.0, count=10, activation=0, clock=line.clock,
                                         sleep=line.sleep))
    assert line.reads == [0.0, 1.0, 2.0, 3.0, 4.0, 4.5] and (zero.read, zero.push) == (6, "bullmq waiting job 1")
    heard = Timeline({0.0: ready(0)})  # a push heard before the poll began: its first read is the evaluation
    zero = asyncio.run(sample_until_wake(heard.read, poll=10.0, count=10, activation=0, clock=heard.clock,
                                         sleep=heard.sleep, push=""))
    assert heard.reads == [0.0] and (zero.read, zero.push) == (1, "")


def test_at_zero_a_failed_read_is_the_polls_error_and_a_tiny_time_scale_reads_as_often_as_it_can() -> None:
    line = Timeline({0.0: ready(0)})
    calls = 0

    async def failing() -> Work:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ReadError("cannot read redis://127.0.0.1:6379/0: connection refused")
        return await line.read()

    with pytest.raises(ReadError, match="connection refused"):
        asyncio.run(sample_until_wake(failing, poll=10.0, count=10, activation=0, clock=line.clock,
                                      sleep=line.sleep))
    assert calls == 3 and line.now == 2.0

    # STACKBLAZE_TIME_SCALE=0.01: a 5 s poll is 50 ms real, room for 5 reads 10 ms apart; 1 s is one read.
    for poll, expected in ((5.0, [0.0, 1.0, 2.0, 3.0, 4.0]), (1.0, [0.0])):
        tiny = Timeline({0.0: ready(0)})
        zero = asyncio.run(sample_until_wake(tiny.read, poll=poll, count=sample_count(poll, 0.01, 0.01),
                                             activation=0, clock=tiny.clock, sleep=tiny.sleep))
        assert tiny.reads == expected and zero.read == zero.reads == len(expected)

