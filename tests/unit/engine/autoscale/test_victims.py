"""Who stops on a scale-down (issue 16 §4): idle first, then the highest index, never a draining one."""

from __future__ import annotations

from stackblaze.engine.autoscale.victims import ReplicaInfo, choose_victims


def test_idle_replicas_stop_before_busy_ones_highest_index_first() -> None:
    replicas = [ReplicaInfo(1, False), ReplicaInfo(2, True), ReplicaInfo(3, False), ReplicaInfo(4, True)]
    assert choose_victims(replicas, 2, "idle") == [3, 1]


def test_busy_ones_only_when_no_idle_one_remains() -> None:
    replicas = [ReplicaInfo(1, True), ReplicaInfo(2, False), ReplicaInfo(3, True)]
    assert choose_victims(replicas, 2, "idle") == [2, 3]


def test_unknown_state_goes_after_idle_and_before_busy() -> None:
    replicas = [ReplicaInfo(1, None), ReplicaInfo(2, True), ReplicaInfo(3, False), ReplicaInfo(4, None)]
    assert choose_victims(replicas, 4, "idle") == [3, 4, 1, 2]


def test_without_busy_data_it_is_the_highest_index() -> None:
    replicas = [ReplicaInfo(i, None) for i in range(1, 6)]
    assert choose_victims(replicas, 2, "idle") == [5, 4]


def test_prefer_highest_ignores_busy_state() -> None:
    replicas = [ReplicaInfo(1, False), ReplicaInfo(2, True), ReplicaInfo(3, True)]
    assert choose_victims(replicas, 2, "highest") == [3, 2]


def test_a_draining_replica_is_never_chosen_again() -> None:
    replicas = [ReplicaInfo(1, False), ReplicaInfo(2, False, draining=True), ReplicaInfo(3, True, draining=True)]
    assert choose_victims(replicas, 2, "idle") == [1]
    assert choose_victims(replicas, 0, "idle") == []
