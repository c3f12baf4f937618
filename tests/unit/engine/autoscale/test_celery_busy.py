"""The rules of Celery busy state (celery_busy.py) on an injected clock: how long a heartbeat's word holds (idle:
1.5 intervals, busy: 3), a worker that went offline forgotten, several workers in one replica, the warning for
replicas that send no heartbeat, and payloads that are not worker events. Pids are real processes (the test's own
and a child of it), since a heartbeat is mapped to a replica through /proc. The real payload of a real Celery
worker is parsed in tests/integration/autoscale_readers/test_celery_heartbeats.py."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from stackblaze.engine.autoscale.busy import Busy
from stackblaze.engine.autoscale.celery_busy import CeleryHeartbeats, Heartbeat, channels, parse_heartbeat

ME = os.getpid()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def beat(pid: int, active: int, *, type_: str = "worker-heartbeat", freq: float = 2.0) -> Heartbeat:
    return Heartbeat(type=type_, hostname="celery@host", pid=pid, active=active, processed=0, freq=freq,
                     timestamp=0.0)


@pytest.fixture
def child() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_an_idle_heartbeat_holds_one_and_a_half_intervals_a_busy_one_three() -> None:
    clock = Clock()
    beats = CeleryHeartbeats(clock=clock)
    beats.heard(beat(ME, 0))
    assert beats.busy({4: ME}) == {4: Busy(False, 0, "celery")}
    clock.now += 3.1  # a solo pool sends nothing while its task runs: a late "idle" is no longer believed
    assert beats.busy({4: ME}) == {}
    beats.heard(beat(ME, 1))
    clock.now += 5.9
    assert beats.busy({4: ME}) == {4: Busy(True, 1, "celery")}
    clock.now += 0.2  # 3 intervals without a heartbeat: unknown
    assert beats.busy({4: ME}) == {}
    beats.heard(beat(ME, 2, freq=10.0))  # --heartbeat-interval 10: its own interval sets the windows
    clock.now += 29
    assert beats.busy({4: ME}) == {4: Busy(True, 2, "celery")}
    assert beats.busy({4: 1}) == {}  # the worker is no descendant of that replica


def test_an_offline_worker_is_forgotten_at_once_and_two_workers_in_one_replica_add_up(child: int) -> None:
    beats = CeleryHeartbeats(clock=Clock())
    beats.heard(beat(ME, 1))
    beats.heard(beat(child, 1))  # a worker started by the replica's process: the same replica
    beats.heard(beat(child, 0, type_="worker-online"))
    assert beats.busy({2: ME}) == {2: Busy(True, 1, "celery")}
    beats.heard(beat(child, 2))
    assert beats.busy({2: ME}) == {2: Busy(True, 3, "celery")}
    assert beats.busy({2: ME, 3: child}) == {2: Busy(True, 1, "celery"), 3: Busy(True, 2, "celery")}
    beats.heard(beat(ME, 0, type_="worker-offline"))
    assert beats.busy({2: ME, 3: child}) == {3: Busy(True, 2, "celery")}


def test_replicas_that_send_no_heartbeat_are_named_once_after_three_intervals_of_listening(child: int) -> None:
    clock = Clock()
    beats = CeleryHeartbeats(clock=clock)
    replicas, started = {1: ME, 2: child}, {1: 900.0, 2: 900.0}
    assert beats.silent("worker", replicas, started) is None  # not listening
    beats.listening_since = clock.now
    beats.heard(beat(ME, 0))
    clock.now += 5.9
    assert beats.silent("worker", replicas, started) is None  # not 3 intervals yet
    clock.now += 0.2
    assert beats.silent("worker", replicas, {1: 900.0, 2: clock.now - 1}) is None  # worker.2 is still booting
    warning = beats.silent("worker", replicas, started)
    assert warning is not None and warning.startswith("no Celery heartbeat from worker.2 in 6s")
    clock.now += 100  # worker.1 stale since, but it did send heartbeats: not named (a solo pool on a long task)
    assert beats.busy(replicas) == {}
    assert beats.silent("worker", replicas, started) is None  # once


def test_a_payload_that_is_no_json_worker_event_is_not_a_heartbeat() -> None:
    event = {"hostname": "celery@h", "pid": 7, "active": 1, "processed": 3, "freq": 2.0, "timestamp": 5.0,
             "type": "worker-heartbeat"}
    plain = json.dumps({"body": json.dumps(event), "content-type": "application/json", "properties": {}})
    assert parse_heartbeat(plain) == Heartbeat("worker-heartbeat", "celery@h", 7, 1, 3, 2.0, 5.0)
    task = dict(event, type="task-started")
    encoded = base64.b64encode(json.dumps(task).encode()).decode()
    assert parse_heartbeat(json.dumps({"body": encoded, "content-type": "application/json",
                                       "properties": {"body_encoding": "base64"}})) is None
    pickled = json.dumps({"body": "gAR9lC4=", "content-type": "application/x-python-serialize",
                          "properties": {"body_encoding": "base64"}})
    assert parse_heartbeat(pickled) is None  # event_serializer pickle: not read
    assert parse_heartbeat(b"not json") is None
    assert parse_heartbeat(json.dumps({"body": "%%%", "content-type": "application/json",
                                       "properties": {"body_encoding": "base64"}})) is None
    assert channels(3) == ("/3.celeryev/worker.*", "/3.celeryev")
