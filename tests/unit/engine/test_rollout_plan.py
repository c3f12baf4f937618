"""plan_rolling: a Deployment's max_surge / max_unavailable rules over the slots the supervisor sees."""

from __future__ import annotations

from stackblaze.engine.local.rollout import is_complete, plan_rolling
from stackblaze.engine.local.slots import Desired, Live, Slot
from stackblaze.spec.rollout import Rolling

NOW = 1000.0


def desired(replicas: int, rolling: Rolling | None = None) -> Desired:
    return Desired(project="p", service="w", replicas=replicas, release=2, cwd="/", start="w", env={},
                   stop_signal=15, shutdown_grace=30, strategy="rolling", config="new", min_ready=10.0,
                   rolling=rolling or Rolling())


def live(config: str, *, age: float, key: str = "") -> Live:
    return Live(key or f"{config}-{age}", 1, NOW - age, 1 if config == "old" else 2, config)


def old_slots(n: int) -> list[Slot]:
    return [Slot("p", "w", i, current=live("old", age=100, key=f"old{i}")) for i in range(1, n + 1)]


def numbers(slots: tuple[Slot, ...]) -> list[int]:
    return [s.replica for s in slots]


def plan(slots: list[Slot], want: Desired, processes: int | None = None):  # type: ignore[no-untyped-def]
    count = processes if processes is not None else sum(
        (s.current is not None) + (s.incoming is not None) + len(s.old) for s in slots)
    return plan_rolling(slots, want, processes=count, now=NOW, scale=1.0)


def test_default_surges_one_new_replica_and_stops_nothing() -> None:
    step = plan(old_slots(4), desired(4))
    assert (numbers(step.surge), step.retire, step.promote, step.start) == ([1], (), (), ())


def test_an_incoming_replica_is_promoted_only_once_available() -> None:
    slots = old_slots(4)
    slots[0].incoming = live("new", age=9.9)
    assert plan(slots, desired(4)).promote == ()
    slots[0].incoming = live("new", age=10)
    step = plan(slots, desired(4))
    assert numbers(step.promote) == [1]
    assert step.surge == ()  # 5 processes: the promoted slot's old replica is still stopping


def test_a_stopping_replica_holds_the_surge() -> None:
    slots = old_slots(4)
    slots[0].current = live("new", age=20)
    slots[0].old["old1"] = live("old", age=100, key="old1")  # asked to stop, not gone yet
    assert plan(slots, desired(4)).surge == ()
    slots[0].old.clear()
    assert numbers(plan(slots, desired(4)).surge) == [2]


def test_max_unavailable_stops_old_replicas_first_and_starts_in_their_slots() -> None:
    step = plan(old_slots(4), desired(4, Rolling(max_surge=0, max_unavailable="50%")))
    assert numbers(step.retire) == [4, 3]
    assert step.start == () and step.surge == ()  # no room until they have gone
    step = plan(old_slots(4), desired(4, Rolling(max_surge=2, max_unavailable=1)))
    assert numbers(step.retire) == [4]
    assert numbers(step.start) == [4] and numbers(step.surge) == [1]


def test_complete_only_when_every_slot_runs_an_available_new_replica_and_nothing_else_is_left() -> None:
    slots = [Slot("p", "w", i, current=live("new", age=30, key=f"n{i}")) for i in (1, 2)]
    assert is_complete(slots, slots, desired(2), now=NOW, scale=1.0)
    slots[1].old["o"] = live("old", age=100, key="o")
    assert not is_complete(slots, slots, desired(2), now=NOW, scale=1.0)
    slots[1].old.clear()
    slots[1].current = live("new", age=5)
    assert not is_complete(slots, slots, desired(2), now=NOW, scale=1.0)
