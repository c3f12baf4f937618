"""Celery busy state (engine/autoscale/celery_busy.py) against real Celery workers (celery 5.5, kombu's Redis
transport) on a real redis-server: what a worker PUBLISHes is captured by a plain PSUBSCRIBE of our own and
decoded by hand, so the parser is checked against the real payload, not against itself; the subscriber maps
each worker's heartbeats to the replica it runs in, says idle, busy with the task it runs, and forgets a worker
that went offline; a worker run with --without-heartbeat is named in one warning."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from stackblaze.engine.autoscale.busy import Busy
from stackblaze.engine.autoscale.celery_busy import CeleryHeartbeats, parse_heartbeat
from tests.integration.autoscale_readers.brokers import stop
from tests.integration.autoscale_readers.conftest import python_worker

WORKER_APP = """
from celery import Celery

app = Celery("tasks", broker=os.environ["BROKER"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)
block = app.task(name="tasks.block")(block)

@app.task(name="tasks.ping")
def ping(path):
    pathlib.Path(path).touch()
"""
CELERY = ("celery", "-A", "tasks", "worker", "-c", "1", "--without-gossip", "--without-mingle", "-l", "warning")


async def until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def test_heartbeats_say_which_replica_is_idle_or_busy_and_a_silent_one_is_named_once(
        redis_url: str, tmp_path: Path, release: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/2"  # a database other than 0: the channel names it
    sender = Celery("sender", broker=url)
    shift = [0.0]  # seconds added to the subscriber's clock, to reach "silent for 3 intervals" without waiting

    async def scenario() -> None:
        raw: list[tuple[str, bytes]] = []
        capture: Any = aioredis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        await capture.psubscribe("*")

        async def record() -> None:
            while True:
                message = await capture.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None:
                    raw.append((message["channel"].decode(), message["data"]))

        recording = asyncio.create_task(record())
        beats = CeleryHeartbeats(clock=lambda: time.time() + shift[0])
        beats.follow(url)
        await until("the subscriber listening", lambda: beats.listening_since)
        other = subprocess.Popen(["sleep", "120"])  # replica 1: not a Celery worker
        try:
            for name in ("loud", "quiet"):
                (tmp_path / name).mkdir()
            loud = python_worker(tmp_path / "loud", release, *CELERY, "-Q", "orders", extra=WORKER_APP, broker=url)
            quiet = python_worker(tmp_path / "quiet", release, *CELERY, "-Q", "other", "--without-heartbeat",
                                  extra=WORKER_APP, broker=url)
            workers.extend([loud, quiet])
            replicas = {1: other.pid, 2: loud.pid, 3: quiet.pid}
            started = dict.fromkeys(replicas, time.time())

            assert await until("an idle heartbeat", lambda: beats.busy(replicas)) == {2: Busy(False, 0, "celery")}
            sender.send_task("tasks.block", queue="orders")
            await until("a busy heartbeat", lambda: beats.busy(replicas).get(2, Busy(None, None, "")).busy)
            assert beats.busy(replicas) == {2: Busy(True, 1, "celery")}
            release.touch()
            await until("idle again", lambda: beats.busy(replicas) == {2: Busy(False, 0, "celery")})

            pinged = tmp_path / "pinged"
            sender.send_task("tasks.ping", (str(pinged),), queue="other")
            await until("the quiet worker running tasks", pinged.exists)
            assert beats.silent("worker", replicas, started) is None  # not silent for 3 intervals yet
            shift[0] = 7.0
            warning = beats.silent("worker", replicas, started)
            # worker.1 is no Celery worker at all: it sends none either
            assert warning is not None and "no Celery heartbeat from worker.1, worker.3 in 6s" in warning, warning
            assert "--without-heartbeat" in warning and "worker.2" not in warning
            assert beats.silent("worker", replicas, started) is None  # said once
            assert beats.busy(replicas) == {}  # 7 s after the last heartbeat: nothing is known
            shift[0] = 0.0

            # SIGTERM to the main process, as stackblaze stops it: worker-offline, forgotten at once
            stop(loud, timeout=15)
            await until("worker.2 forgotten", lambda: 2 not in beats.busy(replicas))
        finally:
            other.kill()
            other.wait()
            await beats.close()
            recording.cancel()
            await capture.aclose()

        channels = {channel for channel, _ in raw}
        assert "/2.celeryev/worker.heartbeat" in channels and "/2.celeryev/worker.offline" in channels, channels
        heartbeats = [data for channel, data in raw if channel == "/2.celeryev/worker.heartbeat"]
        for data in heartbeats:  # decoded by hand from kombu's envelope, then compared with the parser's answer
            envelope = json.loads(data)
            assert envelope["content-type"] == "application/json"
            assert envelope["properties"]["body_encoding"] == "base64"
            event = json.loads(base64.b64decode(envelope["body"]))
            assert event["type"] == "worker-heartbeat" and event["pid"] == loud.pid and event["freq"] == 2.0
            assert event["hostname"].startswith("celery@")
            beat = parse_heartbeat(data)
            assert beat is not None
            assert (beat.type, beat.pid, beat.active, beat.processed, beat.freq, beat.timestamp, beat.hostname) == (
                event["type"], event["pid"], event["active"], event["processed"], event["freq"], event["timestamp"],
                event["hostname"])
        assert {parse_heartbeat(data).active for data in heartbeats} == {0, 1}  # type: ignore[union-attr]
        last = json.loads(base64.b64decode(json.loads(heartbeats[-1])["body"]))
        print(f"\n{len(heartbeats)} heartbeats of pid {loud.pid}, the last: {last}")
        assert not any(parse_heartbeat(data) for channel, data in raw if "celeryev" not in channel)  # tasks, pidbox

    asyncio.run(scenario())
    sender.close()
