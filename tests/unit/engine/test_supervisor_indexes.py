"""The supervisor runs an explicit set of replica numbers (an autoscaled worker's `Desired.indexes`): a
scale-down stops exactly the victims the autoscaler chose, wherever they are, and the restart policy does not
bring them back; a scale-up fills the numbers it is given. (FakeRunner and FakeClock: no processes; the
real runner is covered by tests/integration/test_autoscale.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from stackblaze.engine.clock import FakeClock, settle
from stackblaze.engine.protocol import replica_numbers
from tests.unit.engine.test_supervisor import World, make_desired


def run(test: Callable[[FakeClock], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test(FakeClock()))


def numbers(world: World) -> list[int]:
    return sorted(int(i.meta["replica"]) for i in world.runner.running("w"))


def test_replica_numbers_are_the_indexes_only_when_they_match_the_count() -> None:
    assert replica_numbers(make_desired(replicas=3)) == (1, 2, 3)
    assert replica_numbers(make_desired(replicas=2, indexes=(4, 2))) == (2, 4)
    assert replica_numbers(make_desired(replicas=0, indexes=(4, 2))) == ()  # stopped: nothing runs
    assert replica_numbers(None) == ()


def test_a_scale_down_stops_the_chosen_victims_and_they_stay_stopped() -> None:
    async def body(clock: FakeClock) -> None:
        world = World(clock, desired=make_desired(replicas=4, indexes=(1, 2, 3, 4)))
        await world.supervisor.start()
        await clock.advance(11)
        assert numbers(world) == [1, 2, 3, 4]
        victims = {i.key for i in world.runner.running("w") if i.meta["replica"] in (1, 3)}
        await world.apply(replicas=2, indexes=(2, 4))
        await clock.advance(400)  # well past every restart the policy could schedule
        assert numbers(world) == [2, 4]
        assert all(world.runner.instances.get(k) is None or world.runner.instances[k].exited_at for k in victims)
        assert not world.kinds("restart-scheduled")
        assert sorted(e["replica"] for e in world.kinds("exit")) == [1, 3]
        assert [row["replica"] for row in world.supervisor.status("p", "w")] == [2, 4]
    run(body)


def test_a_scale_up_fills_the_given_numbers_and_a_crash_there_restarts() -> None:
    async def body(clock: FakeClock) -> None:
        world = World(clock, desired=make_desired(replicas=2, indexes=(2, 4)))
        await world.supervisor.start()
        await clock.advance(11)
        assert numbers(world) == [2, 4]
        await world.apply(replicas=4, indexes=(1, 2, 3, 4))
        assert numbers(world) == [1, 2, 3, 4]
        (third,) = [i for i in world.runner.running("w") if i.meta["replica"] == 3]
        world.runner.exit(third.key, code=1)
        await clock.advance(0)
        assert numbers(world) == [1, 2, 3, 4]  # still wanted: the restart policy keeps it
    run(body)


def test_a_victim_that_ignores_its_stop_signal_is_killed_after_its_grace() -> None:
    async def body(clock: FakeClock) -> None:
        world = World(clock, desired=make_desired(replicas=2, indexes=(1, 2), start="busy", shutdown_grace=5.0))
        world.runner.ignores_stop.add("busy")
        await world.supervisor.start()
        await clock.advance(11)
        await world.apply(replicas=1, indexes=(2,))
        await settle()
        assert [row["state"] for row in world.supervisor.status("p", "w")] == ["stopping", "running"]
        await clock.advance(5.1)
        (killed,) = world.kinds("exit")
        assert killed["replica"] == 1 and killed["details"]["killed_after_grace"] == 5.0
        assert numbers(world) == [2]
        assert [row["replica"] for row in world.supervisor.status("p", "w")] == [2]
    run(body)
