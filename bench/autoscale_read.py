#!/usr/bin/env python3
"""The cost of one autoscaler poll: one read of a service's queues, per queue kind, against a real broker.

Run by hand: `python bench/autoscale_read.py [--reads N] [--jobs N] [--queues N] [--rabbitmq URL] [--nats URL]`.
It starts its own redis-server on a free loopback port and fills each Redis kind's queues with --jobs jobs
laid out as the library writes them (ready, prioritized, delayed, in flight); RabbitMQ and NATS are measured
when their URL is given (the management API, the monitoring port). Prints the median and p99 of a read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import tempfile
import time

import redis

from stackblaze.engine.autoscale.readers import open_reader
from stackblaze.spec.autoscale import QueueKind, Queues


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fill(client: redis.Redis, name: str, jobs: int) -> None:
    """Each Redis kind's keys for queue `name`: a quarter each ready, prioritized/priority, delayed, in flight."""
    now_ms = int(time.time() * 1000)
    quarter = max(1, jobs // 4)
    ids = [f"{name}-{i}" for i in range(quarter)]
    pipe = client.pipeline(transaction=False)
    # celery
    pipe.lpush(name, *ids)
    pipe.lpush(name + "\x06\x169", *ids)
    pipe.hset("unacked", mapping={i: "[]" for i in ids})
    pipe.sadd(f"_kombu.binding.{name}", f"{name}\x06\x16\x06\x16{name}")
    # rq
    pipe.rpush(f"rq:queue:{name}", *ids)
    pipe.sadd("rq:queues", f"rq:queue:{name}")
    pipe.zadd(f"rq:scheduled:{name}", {i: now_ms // 1000 - 1 + n % 2 * 7200 for n, i in enumerate(ids)})
    pipe.zadd(f"rq:wip:{name}", {i: now_ms // 1000 for i in ids})
    for i in ids[:1]:
        pipe.hset(f"rq:job:{i}", "enqueued_at", "2026-01-01T00:00:00.000000Z")
    # bullmq
    base = f"bull:{name}"
    pipe.lpush(f"{base}:wait", *ids)
    pipe.zadd(f"{base}:prioritized", {i: n for n, i in enumerate(ids)})
    pipe.zadd(f"{base}:delayed", {i: (now_ms + (n % 2) * 3_600_000) * 0x1000 + n % 4096 for n, i in enumerate(ids)})
    pipe.lpush(f"{base}:active", *ids)
    pipe.hset(f"{base}:meta", "version", "bullmq:5.81.5")
    pipe.set(f"{base}:id", quarter)
    pipe.hset(f"{base}:{ids[-1]}", mapping={"timestamp": now_ms - 5000, "delay": 0})
    # dramatiq: the delay queue's messages are decoded one by one to find the due ones
    key = f"dramatiq:{name}"
    pipe.rpush(key, *ids)
    pipe.hset(f"{key}.msgs", mapping={i: json.dumps({"message_timestamp": now_ms}) for i in ids})
    pipe.rpush(f"{key}.DQ", *ids)
    pipe.hset(f"{key}.DQ.msgs", mapping={
        i: json.dumps({"options": {"eta": now_ms + (n % 2) * 3_600_000}, "message_timestamp": now_ms})
        for n, i in enumerate(ids)})
    pipe.execute()


async def measure(queues: Queues, reads: int) -> tuple[list[float], int]:
    reader = open_reader(queues)
    try:
        await reader.read(time.time())  # connects and loads the script
        times = []
        for _ in range(reads):
            started = time.perf_counter()
            work = await reader.read(time.time())
            times.append(time.perf_counter() - started)
        return times, work.total
    finally:
        await reader.close()


def show(kind: str, times: list[float], total: int, queues: int) -> None:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{kind:<11} {queues} queue(s)  work={total:<7} median {statistics.median(times) * 1000:6.3f} ms  "
          f"p99 {p99 * 1000:6.3f} ms  ({len(times)} reads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per queue (a dramatiq read decodes a "
                        "quarter of them)")
    parser.add_argument("--queues", type=int, default=1)
    parser.add_argument("--rabbitmq", help="e.g. http://guest:guest@127.0.0.1:15672/%%2F QUEUE[,QUEUE]", nargs=2)
    parser.add_argument("--nats", help="e.g. http://127.0.0.1:8222 STREAM/CONSUMER", nargs=2)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", data], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            names = tuple(f"q{n}" for n in range(args.queues))
            for name in names:
                fill(client, name, args.jobs)
            url = f"redis://127.0.0.1:{port}/0"
            kinds: tuple[QueueKind, ...] = ("celery", "rq", "bullmq", "dramatiq", "redis-list")
            for kind in kinds:
                times, total = asyncio.run(measure(Queues(kind, url, names), args.reads))
                show(kind, times, total, len(names))
        finally:
            server.terminate()
            server.wait(timeout=10)
    http_kinds: tuple[tuple[QueueKind, list[str] | None], ...] = (("rabbitmq", args.rabbitmq), ("nats", args.nats))
    for kind, given in http_kinds:
        if given:
            broker_names = tuple(given[1].split(","))
            times, total = asyncio.run(measure(Queues(kind, given[0], broker_names), args.reads))
            show(kind, times, total, len(broker_names))


if __name__ == "__main__":
    main()
