"""The poll's mean of reads (sampling.py): what decide() sizes on, when the idle clock starts, how many reads a
poll takes and when. Pure functions and an asyncio loop on a real clock; no broker (the real-process test of
the daemon's sampling is tests/integration/test_autoscale_steady.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from stackblaze.engine.autoscale.decide import LoopState, decide
from stackblaze.engine.autoscale.decisions import explain
from stackblaze.engine.autoscale.sampling import SAMPLES_PER_POLL, mean_work, sample_count, sample_work
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
