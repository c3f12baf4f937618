"""Jobs for shop's three workers, enqueued by the test at `cache`'s 127.77.x.y address and counted in that Redis:
Celery's per-order counter and results, BullMQ's completed set (and the SMTP server's mail), the Go worker's set."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from tests.e2e.brokers.smtp_sink import SmtpSink
from tests.e2e.internal.shop import Project
from tests.integration.conftest import wait_for

EMAILS_COMPLETED = "bull:email-dispatch:completed"
EMAILS_FAILED = "bull:email-dispatch:failed"


@dataclass(frozen=True)
class Batch:
    first: int
    count: int

    def ids(self, prefix: str) -> list[str]:
        return [f"{prefix}-{n}" for n in range(self.first, self.first + self.count)]


def enqueue(shop: Project, batch: Batch) -> None:
    """`count` jobs for each worker, as a web process would: the examples' own enqueue programs (Celery's
    apply_async, BullMQ's Queue.add) from their releases, and an LPUSH for the Go worker."""
    address = shop.address("cache")
    out = shop.one_off("orders", "python", "enqueue.py", str(batch.count), str(batch.first),
                       env={"REDIS_URL": f"redis://{address}:6379/0"})
    assert f"queued {batch.count} orders" in out
    out = shop.one_off("email", "node", "enqueue.js", str(batch.count), str(batch.first),
                       env={"REDIS_HOST": address, "REDIS_PORT": "6379"})
    assert f"queued {batch.count} emails" in out
    shop.redis().lpush("go:jobs", *batch.ids("job"))


def done(shop: Project, sink: SmtpSink, batch: Batch) -> dict[str, int]:
    """How many of the batch each worker finished, read from Redis (and the SMTP server for the mail)."""
    r = shop.redis()
    orders = sum(v is not None for v in r.hmget("orders:processed", batch.ids("order")))
    results = sum(v is not None for v in r.mget([f"celery-task-meta-{i}" for i in batch.ids("order")]))
    mailed = sink.counter.counts()
    return {"orders": min(orders, results), "email": sum(i in mailed for i in batch.ids("email")),
            "counter": sum(r.smismember("go:done", batch.ids("job")))}


def run_batch(shop: Project, sink: SmtpSink, batch: Batch, *, what: str, timeout: float = 90) -> float:
    """Enqueue the batch, wait until every worker finished all of it; returns the seconds it took."""
    r = shop.redis()
    completed = int(r.zcard(EMAILS_COMPLETED))
    started = time.monotonic()
    enqueue(shop, batch)
    want = {name: batch.count for name in ("orders", "email", "counter")}
    wait_for(f"{what}: {batch.count} jobs done by each worker", lambda: done(shop, sink, batch) == want,
             timeout=timeout, interval=0.2)
    took = time.monotonic() - started
    # BullMQ records each job completed (and none failed) in Redis itself.
    wait_for("BullMQ to record the batch completed",
             lambda: int(r.zcard(EMAILS_COMPLETED)) == completed + batch.count, timeout=30)
    assert int(r.zcard(EMAILS_FAILED)) == 0
    print(f"{what}: {done(shop, sink, batch)} of {batch.count} each, in {took:.1f}s")
    return took


def reachable(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False
