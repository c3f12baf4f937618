"""Processes orders: `celery -A worker worker --loglevel=info --concurrency=4`. Broker and results: REDIS_URL."""

import os
import time

import redis
from celery import Celery
from celery.utils.log import get_task_logger

# stackblaze.yaml sets it to the project's own Redis (${{cache.REDIS_URL}}/0)
REDIS_URL = os.environ.get("REDIS_URL", "redis://cache.internal:6379/0")

app = Celery("orders", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    # Acknowledge a task when it has run, not when it is received: a worker killed mid-task (kill -9, OOM,
    # a lost host) leaves the message unacknowledged, and Redis hands it to another worker once the
    # visibility timeout runs out. A task may then run twice, so it must be safe to repeat (at-least-once).
    task_acks_late=True,
    # ... and when only a pool process dies (the OOM killer picks the biggest child), requeue its task at
    # once instead of recording a WorkerLostError as its result.
    task_reject_on_worker_lost=True,
    # How long a task may stay unacknowledged before Redis redelivers it; longer than the slowest task
    # (Celery's default is one hour).
    broker_transport_options={"visibility_timeout": float(os.environ.get("VISIBILITY_TIMEOUT", "3600"))},
    result_expires=int(os.environ.get("RESULT_EXPIRES", "86400")),
    worker_prefetch_multiplier=1,  # with acks_late, reserve only what the pool can run now
    broker_connection_retry_on_startup=True,
)
logger = get_task_logger(__name__)
# Where the order's effect goes; a real app writes to its database here.
orders = redis.Redis.from_url(REDIS_URL)


@app.task
def process_order(order_id: str) -> dict[str, str]:
    time.sleep(float(os.environ.get("ORDER_WORK_SECONDS", "0.05")))  # stands in for charging and reserving stock
    # Counted per order, so a second delivery of the same order shows as 2, not as a second order.
    orders.hincrby("orders:processed", order_id, 1)
    logger.info("order %s processed by replica %s", order_id, os.environ.get("STACKBLAZE_REPLICA", "?"))
    return {"order_id": order_id, "status": "processed"}
