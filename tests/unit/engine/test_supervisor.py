"""The supervisor's policy against the FakeRunner and a FakeClock that drives its timers: the restart curve,
the reset after 10 minutes, adoption after a daemon restart, exits seen twice, rolling and recreate rollouts.
(No processes: FakeRunner stands in for the runner; the real one is covered by tests/integration.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stackblaze.engine.backoff import BackoffPolicy
from stackblaze.engine.clock import FakeClock, settle
from stackblaze.engine.local.fake_runner import FakeInstance, FakeRunner
from stackblaze.engine.local.rollout import Rollout
from stackblaze.engine.local.slots import Desired
from stackblaze.engine.local.supervisor import Supervisor
from stackblaze.spec.rollout import Rolling


class MemoryStatus:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, int], dict[str, Any]] = {}

    def replica_statuses(self, project: str) -> dict[tuple[str, int], dict[str, Any]]:
        return {(s, r): v for (p, s, r), v in self.rows.items() if p == project}

    def save_replica_status(self, project: str, service: str, replica: int, status: dict[str, Any]) -> None:
        self.rows[(project, service, replica)] = dict(status)

    def delete_replica_status(self, project: str, service: str, replica: int) -> None:
        self.rows.pop((project, service, replica), None)


class World:
    """One service `p/w` under a real Supervisor, with the fakes around it."""

    def __init__(self, clock: FakeClock, runner: FakeRunner | None = None, status: MemoryStatus | None = None,
                 desired: Desired | None = None) -> None:
        self.clock = clock
        self.runner = runner or FakeRunner(clock)
        self.status = status or MemoryStatus()
        self.want: Desired | None = desired or make_desired()
        self.events: list[dict[str, Any]] = []
        self.failed: list[Rollout] = []
        self.supervisor = Supervisor(
            runner=self.runner, store=self.status, policy=BackoffPolicy(), logs_dir=Path("/nonexistent"),
            desired=lambda p, s: self.want if (p, s) == ("p", "w") else None,
            services=lambda: [("p", "w")] if self.want else [], record_event=self.record, clock=clock,
            rollout_failed=self.on_failed,
        )

    def record(self, **fields: Any) -> None:
        self.events.append({"at": self.clock.time(), **fields})

    def on_failed(self, rollout: Rollout) -> None:
        self.failed.append(rollout)
        assert self.want is not None and rollout.from_config is not None
        # as the control plane does: the service is recorded as running the old release again
        self.want = replace(self.want, release=rollout.from_release or 1, config=rollout.from_config)

    def running(self) -> list[FakeInstance]:
        return self.runner.running("w")

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    async def apply(self, **changes: Any) -> None:
        assert self.want is not None
        self.want = replace(self.want, **changes)
        await self.supervisor.reconcile("p", "w", fresh=True)
        await settle()


def make_desired(**changes: Any) -> Desired:
    base = Desired(project="p", service="w", replicas=1, release=1, cwd="/srv", start="python3 w.py", env={},
                   stop_signal=15, shutdown_grace=30.0, strategy="rolling", config="v1", min_ready=10.0,
                   progress_deadline=600.0, rolling=Rolling())
    return replace(base, **changes)


def run(test: Callable[[FakeClock], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test(FakeClock()))


async def started(world: World, *, settled: bool = True) -> World:
    """A started supervisor; with `settled`, its first rollout is complete (min_ready has passed)."""
    await world.supervisor.start()
    await settle()
    if settled and world.want is not None:
        await world.clock.advance(world.want.min_ready + 1)
    return world


def test_the_restart_curve_is_the_kubelets_and_a_long_run_resets_it() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock))
        gaps = []
        for _ in range(9):
            (replica,) = world.running()
            clock.now += 1.0  # it ran a second
            world.runner.exit(replica.key, code=3)
            await settle()
            exited = clock.time()
            await clock.advance((clock.next_due() or clock.time()) - clock.time())
            (again,) = world.running()
            gaps.append(again.started_at - exited)
        assert gaps == [0, 10, 20, 40, 80, 160, 300, 300, 300]
        (replica,) = world.running()
        clock.now += 600.0  # ran 10 minutes: the next exit restarts at once
        world.runner.exit(replica.key, code=3)
        await clock.advance(0)
        assert world.running() and world.running()[0].started_at == clock.time()
    run(body)


def test_restarts_count_when_they_happen_and_the_replica_reads_waiting_meanwhile() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock))
        for _ in range(2):  # the first restart is at once, the second waits 10 s
            world.runner.exit(world.running()[0].key, code=1)
            await settle()
        (row,) = world.supervisor.status("p", "w")
        assert (row["state"], row["restart_count"]) == ("waiting", 1)
        assert row["last_exit"]["code"] == 1 and row["last_exit"]["pid"] is not None
        await clock.advance(10)
        (row,) = world.supervisor.status("p", "w")
        assert (row["state"], row["restart_count"]) == ("running", 2)
    run(body)


def test_an_exit_reported_twice_is_counted_once() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock))
        (replica,) = world.running()
        world.runner.exit(replica.key, code=3)
        record = replica.record()
        await settle()
        await world.supervisor.handle_exit(record)  # the runner said it again (e.g. before an ack was lost)
        await settle()
        assert len(world.kinds("exit")) == 1
        assert len(world.running()) == 1
    run(body)


def test_a_new_daemon_adopts_the_running_replicas_and_the_exits_it_missed() -> None:
    async def body(clock: FakeClock) -> None:
        first = await started(World(clock, desired=make_desired(replicas=2)))
        one, two = sorted(first.running(), key=lambda i: i.meta["replica"])
        first.runner.exit(one.key, code=3)
        await settle()
        first.supervisor.halt()  # the daemon dies here
        first.runner.on_exit = None
        replacement = sorted(first.running(), key=lambda i: i.meta["replica"])[0]
        first.runner.exit(replacement.key, code=4)  # ... and this exit happens while no daemon listens
        second = await started(World(clock, runner=first.runner, status=first.status,
                                     desired=make_desired(replicas=2)))
        running = sorted(second.running(), key=lambda i: i.meta["replica"])
        assert running[1].pid == two.pid  # adopted, not restarted
        assert len(running) == 2 and running[0].pid not in (one.pid, replacement.pid)
        rows = second.supervisor.status("p", "w")
        assert rows[0]["restart_count"] == 2 and rows[0]["last_exit"]["code"] == 4
        assert [e["details"]["code"] for e in second.kinds("exit")] == [4]  # counted once, by the new daemon
    run(body)


def test_rolling_replaces_one_replica_at_a_time_once_the_new_one_is_available() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock, desired=make_desired(replicas=3)))
        await world.apply(release=2, config="v2")
        most = 0
        for _ in range(40):
            counts = [(i.meta["release"]) for i in world.running()]
            most = max(most, len(counts))
            assert sum(r == 1 for r in counts) + sum(r == 2 and clock.time() - i.started_at >= 10
                                                     for r, i in zip(counts, world.running(), strict=True)) >= 3
            if sorted(counts) == [2, 2, 2]:
                break
            await clock.advance(1)
        assert sorted(i.meta["release"] for i in world.running()) == [2, 2, 2]
        assert most == 4  # max_surge 1
        assert world.kinds("rollout-complete")
    run(body)


def test_a_new_replica_that_exits_before_it_is_available_fails_the_rollout_and_keeps_the_old() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock, desired=make_desired(replicas=3)))
        old = {i.pid for i in world.running()}
        await world.apply(release=2, config="v2")
        (new,) = [i for i in world.running() if i.meta["release"] == 2]
        clock.now += 0.5
        world.runner.exit(new.key, code=3)
        await settle()
        assert [r.release for r in world.failed] == [2]
        assert {i.pid for i in world.running()} == old  # never stopped
        (failed,) = world.kinds("rollout-failed")
        assert "release 1 kept running" in failed["message"]
        await clock.advance(700)  # no retry of the failed release, no deadline firing later
        assert {i.pid for i in world.running()} == old and len(world.kinds("rollout-failed")) == 1
    run(body)


def test_recreate_stops_every_old_replica_first_and_restarts_the_previous_release_on_failure() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock, desired=make_desired(replicas=2, strategy="recreate")))
        await world.apply(release=2, config="v2", start="python3 broken.py")
        news = world.running()
        assert [i.meta["release"] for i in news] == [2, 2]  # the old ones were gone before these started
        spawns = [f["meta"]["release"] for op, f in world.runner.calls if op == "spawn"]
        assert spawns == [1, 1, 2, 2]
        world.runner.exit(news[0].key, code=1)
        await settle()
        assert sorted(i.meta["release"] for i in world.running()) == [1, 1]
        assert "release 1 started again" in world.kinds("rollout-failed")[0]["message"]
    run(body)


def test_a_rollout_that_makes_no_progress_fails_at_its_deadline() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock, desired=make_desired(replicas=2, shutdown_grace=600.0,
                                                                progress_deadline=60.0)))
        world.runner.ignores_stop.add("python3 w.py")  # the old replicas take their whole grace to go
        await world.apply(release=2, config="v2", start="python3 w2.py")
        await clock.advance(61)
        (failed,) = world.kinds("rollout-failed")
        assert "progress_deadline (60s)" in failed["message"] and "1/2 new replicas available" in failed["message"]
    run(body)


def test_a_runner_death_restarts_every_replica_at_once_and_is_not_a_crash() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock, desired=make_desired(replicas=2)))
        for _ in range(3):
            await world.runner.lose()
            await settle()
            assert len(world.running()) == 2  # back at once, no back-off
            assert all(i.started_at == clock.time() for i in world.running())
        rows = world.supervisor.status("p", "w")
        assert [r["restart_count"] for r in rows] == [3, 3]
        assert "the runner died" in rows[0]["last_exit"]["meaning"]
    run(body)


@pytest.mark.parametrize("missing", [True, False])
def test_a_start_command_that_cannot_start_fails_the_rollout(missing: bool) -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock, desired=make_desired(replicas=2)))
        if missing:
            world.runner.missing.add("pyhton")
        await world.apply(release=2, config="v2", start="pyhton w.py" if missing else "python3 w.py")
        if not missing:
            await clock.advance(30)
            assert not world.failed and world.kinds("rollout-complete")
            return
        assert [r.release for r in world.failed] == [2]
        assert "the start command was not found" in world.kinds("rollout-failed")[0]["message"]
        assert sorted(i.meta["release"] for i in world.running()) == [1, 1]
    run(body)


def test_log_lines_the_runner_could_not_write_are_reported_once_each_way() -> None:
    async def body(clock: FakeClock) -> None:
        world = await started(World(clock))
        (replica,) = world.running()
        assert world.runner.on_log_drops is not None
        await world.runner.on_log_drops({"event": "log-dropping", "instance": {
            **replica.record(), "dropped_error": "ENOSPC: no space left on device"}})
        (row,) = world.supervisor.status("p", "w")
        assert row["log_dropping"] and "ENOSPC" in world.kinds("log-dropping")[0]["message"]
        await world.runner.on_log_drops({"event": "log-resumed", "instance": replica.record(), "lost": 550,
                                         "since": clock.time() - 3, "until": clock.time()})
        (row,) = world.supervisor.status("p", "w")
        assert (row["log_dropping"], row["log_lines_dropped"]) == (False, 550)
        assert "550 lines were lost over 3.0s" in world.kinds("log-resumed")[0]["message"]
    run(body)
