"""The queue-metrics server's sampler (metrics_server.Sampler): what GET /metrics/<service> answers between and
during polls. A scripted reader on a Timeline clock, no broker: the answer's `work` is the last complete poll's
mean of SAMPLES_PER_POLL reads spread over the poll (as the local loop decides), `waiting` the latest single read's
ready + due (the wake), and a failed read a 503 until a read succeeds. The real server against a real Redis is
tests/integration/autoscale_readers/test_metrics_server.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from stackblaze.engine.autoscale.metrics_server import Sampler
from stackblaze.engine.autoscale.sampling import SAMPLES_PER_POLL
from stackblaze.engine.autoscale.work import ReadError, Work


class Timeline:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Script:
    """A reader that answers the scripted reads in order (an exception is raised), noting when it was read;
    `seen(i)` runs as read i answers, to look at the server's answer in the middle of a poll."""

    def __init__(self, timeline: Timeline, reads: list[Work | Exception],
                 seen: Callable[[int], None] = lambda _: None) -> None:
        self.timeline, self.reads, self.seen = timeline, list(reads), seen
        self.times: list[float] = []

    async def read(self, now: float) -> Work:
        self.times.append(self.timeline.now)
        item = self.reads.pop(0)
        self.seen(len(self.times) - 1)
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        pass


def work(ready: int = 0, due: int = 0, in_flight: int = 0) -> Work:
    return Work(ready=ready, due=due, in_flight=in_flight, oldest_age=None)


def sampler(timeline: Timeline, reader: Script, poll: float = 5.0) -> Sampler:
    return Sampler("mails", reader, poll, url="redis://:pw@cache:6379/0", clock=timeline.time,
                   wall=timeline.time, sleep=timeline.sleep)


def test_work_is_the_polls_mean_and_waiting_the_latest_read() -> None:
    """Under a steady load one instant read is noise: the served work is the poll's mean (what the local loop
    sizes on), the same all along the next poll; a burst in its very last read wakes through `waiting` at once."""
    timeline = Timeline()
    first = [work(in_flight=n) for n in (3, 5, 4, 4, 6, 2, 4, 5, 4, 3)]  # mean 4, one read says 6
    burst = [work(in_flight=4)] * 9 + [work(ready=12, due=3, in_flight=4)]
    answers: dict[int, tuple[int, dict[str, Any]]] = {}
    reader = Script(timeline, first + burst, seen=lambda i: answers.__setitem__(i, it.answer()))
    it = sampler(timeline, reader)

    async def two_polls() -> None:
        await it.poll_once()
        status, body = it.answer()
        assert status == 200
        assert (body["work"], body["in_flight"], body["samples"], body["poll"]) == (4.0, 4.0, SAMPLES_PER_POLL, 5.0)
        assert body["at"] == 1000.0 + 4.5  # when the poll's last read was
        await it.poll_once()

    asyncio.run(two_polls())
    # the reads: 10 per poll, 0.5 s apart, the polls back to back
    assert reader.times == [1000.0 + 0.5 * i for i in range(20)]
    assert SAMPLES_PER_POLL == 10
    # During the second poll the answer is the first poll's mean, whatever the reads so far say
    assert {answers[i][1]["work"] for i in range(11, 20)} == {4.0}
    status, body = it.answer()
    assert status == 200
    assert body["waiting"] == 15  # the latest read: 12 ready + 3 due, not a mean of 1.5
    assert body["work"] == 5.5 and (body["ready"], body["due"], body["in_flight"]) == (1.2, 0.3, 4.0)
    assert body["latest"]["work"] == 19 and body["latest"]["at"] == 1000.0 + 9.5


def test_before_the_first_poll_ends_the_means_are_of_the_reads_so_far() -> None:
    timeline = Timeline()
    answers: dict[int, tuple[int, dict[str, Any]]] = {}
    reader = Script(timeline, [work(ready=2), work(ready=4)] + [work()] * 8,
                    seen=lambda i: answers.__setitem__(i, it.answer()))
    it = sampler(timeline, reader)
    assert it.answer() == (503, {"error": "mails: no read of its queues yet"})
    asyncio.run(it.poll_once())
    # as read 2 answers, reads 0 and 1 are in: their mean, 2 samples
    assert (answers[2][1]["work"], answers[2][1]["samples"], answers[2][1]["waiting"]) == (3.0, 2, 4)
    assert it.answer()[1]["work"] == 0.6


def test_a_failed_read_is_a_503_until_a_read_succeeds_and_the_old_mean_is_not_served_again(
        caplog: pytest.LogCaptureFixture) -> None:
    timeline = Timeline()
    down = ReadError("cannot read redis://:***@cache:6379/0: Connection refused")
    reads: list[Work | Exception] = [work(ready=8)] * 10 + [work(ready=8), down, down, OSError("reset by peer"),
                                                             work(ready=1)] + [work(ready=1)] * 9
    reader = Script(timeline, reads)
    it = sampler(timeline, reader)

    async def polls() -> list[tuple[int, dict[str, Any]]]:
        seen = []
        for _ in range(5):
            await it.poll_once()
            seen.append(it.answer())
        return seen

    with caplog.at_level(logging.INFO, logger="stackblaze.queue_metrics"):
        first, failed, again, other, back = asyncio.run(polls())
    assert first[1]["work"] == 8.0
    assert failed == (503, {"error": "cannot read redis://:***@cache:6379/0: Connection refused"})
    assert again == failed
    # what the reader did not translate is a failed read too, its url without the password
    assert other[0] == 503 and other[1]["error"] == "cannot read redis://:***@cache:6379/0: reset by peer"
    # back: the reads since, not the mean of 8 from before the outage
    assert back[0] == 200 and back[1]["work"] == 1.0 and back[1]["samples"] == 10
    # a failed read starts the next poll one read interval later, not at once
    assert reader.times[11:15] == [reader.times[11] + 0.5 * i for i in range(4)]
    said = [r.getMessage() for r in caplog.records]
    assert said.count("mails: cannot read redis://:***@cache:6379/0: Connection refused") == 1  # said once
    assert "mails: read again" in said


def test_each_polls_warnings_are_served_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    timeline = Timeline()
    missing = Work(ready=0, due=0, in_flight=0, oldest_age=None, warnings=("rq queue 'mail' not found",))
    it = sampler(timeline, Script(timeline, [missing] * 10))
    with caplog.at_level(logging.WARNING, logger="stackblaze.queue_metrics"):
        asyncio.run(it.poll_once())
    assert it.answer()[1]["warnings"] == ["rq queue 'mail' not found"]
    assert [r.getMessage() for r in caplog.records] == ["mails: rq queue 'mail' not found"]
