"""Following logs live: a follower is woken by inotify when its files are written, rotated or created, with
the fallback poll set to a minute, so only the wake-up can deliver a line within the deadline."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from stackblaze.logs import follow
from stackblaze.logs.drains.fake import MemoryCursorStore, MemorySink
from stackblaze.logs.drains.manager import DrainConfig, DrainManager
from stackblaze.logs.follow import LiveFollower, LogWatch
from stackblaze.logs.record import LogRecord
from tests.unit.logs.test_drains_cursor import Worker
from tests.unit.logs.test_drains_manager import until

DEADLINE = 2.0  # seconds for a wake-up that inotify gives in well under a millisecond


def write(path: Path, text: str, at: str = "01.000000") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(f"2026-11-30T10:00:{at}Z stdout F {text}\n")


@pytest.fixture(autouse=True)
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "FALLBACK", 60.0)
    monkeypatch.setattr(follow, "POLL", 60.0)


async def woken(follower: LiveFollower, change: Callable[[], None], want: int) -> list[LogRecord]:
    """Make the change, then wait for wake-ups (each within DEADLINE) until `want` records were read."""
    got = follower.poll()
    change()
    while len(got) < want:
        await asyncio.wait_for(follower.wait(), DEADLINE)
        got += follower.poll()
    return got


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_a_written_line_wakes_the_follower_without_the_poll(tmp_path: Path) -> None:
    path = tmp_path / "w" / "1.log"
    write(path, "before follow")

    async def scenario() -> None:
        follower = LiveFollower(tmp_path, "w")
        try:
            assert follower.poll() == []
            waiting = asyncio.create_task(follower.wait())
            await asyncio.sleep(0.05)
            assert not waiting.done()  # nothing written: it sleeps
            write(path, "live")
            await asyncio.wait_for(waiting, DEADLINE)
            assert [r.line for r in follower.poll()] == ["live"]
        finally:
            follower.close()

    run(scenario)


def test_a_rotation_and_a_new_replica_file_wake_it_and_no_line_is_lost(tmp_path: Path) -> None:
    service = tmp_path / "w"
    write(service / "1.log", "old")

    def rotate() -> None:
        write(service / "1.log", "last before rotation", "02.000000")
        os.rename(service / "1.log", service / "1.log.1")  # as the runner rotates: rename, then reopen
        write(service / "1.log", "first after rotation", "03.000000")

    async def scenario() -> None:
        follower = LiveFollower(tmp_path, "w")
        try:
            got = await woken(follower, rotate, 2)
            assert [r.line for r in got] == ["last before rotation", "first after rotation"]
            got = await woken(follower, lambda: write(service / "2.log", "replica two", "04.000000"), 1)
            assert [(r.replica, r.line) for r in got] == [(2, "replica two")]
        finally:
            follower.close()

    run(scenario)


def test_a_new_service_directory_is_watched_when_following_every_service(tmp_path: Path) -> None:
    write(tmp_path / "web" / "1.log", "web")

    async def scenario() -> None:
        follower = LiveFollower(tmp_path, None)
        try:
            got = await woken(follower, lambda: write(tmp_path / "jobs" / "1.log", "first job line"), 1)
            assert [(r.service, r.line) for r in got] == [("jobs", "first job line")]
            got = await woken(follower, lambda: write(tmp_path / "jobs" / "1.log", "second", "02.000000"), 1)
            assert [(r.service, r.line) for r in got] == [("jobs", "second")]
        finally:
            follower.close()

    run(scenario)


def test_followers_share_one_inotify_and_closing_one_leaves_the_other_woken(tmp_path: Path) -> None:
    path = tmp_path / "w" / "1.log"
    write(path, "start")

    async def scenario() -> None:
        first, second = LiveFollower(tmp_path, "w"), LiveFollower(tmp_path, "w")
        first.poll()
        second.poll()
        assert len(LogWatch._hubs) == 1
        first.close()  # a closed browser tab: the other follower keeps its wake-ups
        got = await woken(second, lambda: write(path, "still live"), 1)
        assert [r.line for r in got] == ["still live"]
        second.close()
        assert asyncio.get_running_loop() not in LogWatch._hubs  # the last one closed the instance

    run(scenario)


def test_without_inotify_the_follower_polls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """inotify_init1 failing (EMFILE: max_user_instances reached) cannot be caused here without starving the
    test process of instances, so the constructor is replaced by one that raises as the kernel would."""
    def refuse(**_: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(follow, "Inotify", refuse)
    monkeypatch.setattr(follow, "POLL", 0.01)
    path = tmp_path / "w" / "1.log"
    write(path, "start")

    async def scenario() -> None:
        follower = LiveFollower(tmp_path, "w")
        try:
            got = await woken(follower, lambda: write(path, "polled"), 1)
            assert [r.line for r in got] == ["polled"]
        finally:
            follower.close()

    run(scenario)


def test_an_idle_drain_is_woken_by_a_write_and_by_a_rotation_not_by_its_poll(tmp_path: Path) -> None:
    """The drains' wait is the same wake-up: with a poll of a minute, lines still reach the receiver at once,
    also those of a file that rotation created (the runner's LogFile, 4 KiB files)."""
    worker = Worker(tmp_path / "logs" / "acme")
    worker.lines(3)

    async def scenario() -> None:
        sink = MemorySink(max_batch_bytes=4096)
        manager = DrainManager(logs_dir=tmp_path / "logs", holds_dir=tmp_path / "holds", store=MemoryCursorStore(),
                               record_event=lambda **fields: None, sink_factory=lambda config: sink,
                               poll_interval=60.0, watch_interval=0.01)
        await manager.start(DrainConfig(id=1, project="acme", service=None, url="https://127.0.0.1:9/in"),
                            from_now=True)
        try:
            await asyncio.sleep(0.1)  # the drain has read nothing new and waits
            worker.lines(1)
            await until("the line at the receiver", lambda: len(sink.lines) == 1, timeout=DEADLINE)
            worker.lines(200)  # ~60 bytes a line: several rotations
            await until("every line at the receiver", lambda: len(sink.lines) == 201, timeout=DEADLINE)
            assert sink.texts() == [f"line {i:06d}" for i in range(3, 204)]
        finally:
            await manager.close()

    run(scenario)
