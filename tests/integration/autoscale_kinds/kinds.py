"""The queue kinds as a user runs them under stackblaze: for each, the worker a replica runs (the real library,
one job at a time), how the test enqueues with that library, and the spec's `queues:` block.

Every job is `jobs.run(id, seconds)`: it marks its id started, sleeps, then counts its id in the `runs` hash of
the test's own Redis (COUNT_URL) and notes the replica that ran it, so "every job exactly once" is counted."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.tools import need

JOBS = """\
import os, time, redis
R = redis.Redis.from_url(os.environ["COUNT_URL"])
REPLICA = os.environ.get("STACKBLAZE_REPLICA", "?")

def run(job_id, seconds):
    R.pipeline(transaction=False).sadd("started", job_id).hincrby("starts", job_id, 1).hset(
        "holder", REPLICA, job_id).execute()
    time.sleep(seconds)
    pipe = R.pipeline(transaction=False)
    pipe.hincrby("runs", job_id, 1)
    pipe.hset("by", job_id, REPLICA)
    pipe.sadd("done", job_id)
    pipe.hdel("holder", REPLICA)
    pipe.execute()
"""

# A busy_probe (issue 16 §4): exit 0 and print the job's id when this replica holds a job, 1 when it holds none.
BUSY_PROBE = """\
import os, sys, redis
held = redis.Redis.from_url(os.environ["COUNT_URL"]).hget("holder", os.environ["STACKBLAZE_REPLICA"])
if held is not None:
    print(held.decode())
sys.exit(0 if held is not None else 1)
"""

# A worker that BRPOPs a plain list; SIGTERM lets the job in hand finish (a 1 s BRPOP bounds the exit).
REDIS_LIST_WORKER = """\
import json, os, signal, redis, jobs
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
broker = redis.Redis.from_url(os.environ["BROKER_URL"])
while not stopping:
    item = broker.brpop(os.environ["QUEUE"], timeout=1)
    if item:
        job = json.loads(item[1])
        jobs.run(job["id"], job["s"])
"""

# RQ's defaults unless the env says otherwise (test_grace.py shortens what hands back a killed worker's job:
# the maintenance interval, the heartbeat of a job's execution, and the idle BLPOP, worker_ttl - 15 s).
RQ_WORKER = """\
import os, redis
from rq import Queue, Worker
conn = redis.Redis.from_url(os.environ["BROKER_URL"])
knobs = {k: int(os.environ[v]) for k, v in (("maintenance_interval", "RQ_MAINTENANCE_INTERVAL"),
         ("job_monitoring_interval", "RQ_JOB_MONITORING_INTERVAL"), ("worker_ttl", "RQ_WORKER_TTL")) if v in os.environ}
Worker([Queue(os.environ["QUEUE"], connection=conn)], connection=conn, **knobs).work(logging_level="WARNING")
"""

# Celery as examples/celery-orders runs it: acks_late (a task killed mid-run stays unacknowledged and Redis
# hands it back after the visibility timeout), prefetch 1, one task at a time (solo pool).
CELERY_APP = """\
import os
from celery import Celery
import jobs

app = Celery("tasks", broker=os.environ["BROKER_URL"])
app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
                broker_connection_retry_on_startup=True,
                broker_transport_options={"visibility_timeout": float(os.environ.get("VISIBILITY_TIMEOUT", "3600"))})

@app.task(name="jobs.run")
def run(job_id, seconds):
    jobs.run(job_id, seconds)
"""
CELERY_START = ("-m celery -A tasks worker -P solo -Q {queue} --without-gossip --without-mingle --without-heartbeat "
                "-l warning")

DRAMATIQ_APP = """\
import os
import dramatiq
from dramatiq.brokers.redis import RedisBroker
import jobs

# dramatiq's defaults unless the env says otherwise (test_grace.py: a dead worker's messages come back sooner).
dramatiq.set_broker(RedisBroker(url=os.environ["BROKER_URL"],
                                heartbeat_timeout=int(os.environ.get("DRAMATIQ_HEARTBEAT_TIMEOUT_MS", "60000")),
                                maintenance_chance=int(os.environ.get("DRAMATIQ_MAINTENANCE_CHANCE", "1000"))))

@dramatiq.actor(queue_name=os.environ["QUEUE"], max_retries=0, time_limit=3_600_000)
def run(job_id, seconds):
    jobs.run(job_id, seconds)
"""
DRAMATIQ_START = "-m dramatiq tasks --processes 1 --threads 1"

# pika, prefetch 1, manual ack after the job: SIGTERM stops consuming, the job in hand is finished and acked.
RABBITMQ_WORKER = """\
import json, os, signal, pika, jobs
stopping = False
def stop(*_):
    global stopping
    stopping = True
signal.signal(signal.SIGTERM, stop)
conn = pika.BlockingConnection(pika.URLParameters(os.environ["AMQP_URL"]))
channel = conn.channel()
channel.basic_qos(prefetch_count=1)
for method, _props, body in channel.consume(os.environ["QUEUE"], inactivity_timeout=0.5):
    if stopping:
        break
    if method is None:
        continue
    job = json.loads(body)
    jobs.run(job["id"], job["s"])
    channel.basic_ack(method.delivery_tag)
channel.cancel()
conn.close()
"""

# nats-py pull consumer: fetch one, run it (in a thread: the client's loop keeps answering), ack it; a job longer
# than a third of the consumer's ack_wait says it is in progress as it runs, so only a dead worker's job comes back.
NATS_WORKER = """\
import asyncio, json, os, signal, nats, jobs
from nats.errors import TimeoutError as FetchTimeout

async def main():
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    nc = await nats.connect(os.environ["NATS_URL"])
    stream, durable = os.environ["QUEUE"].split("/")
    sub = await nc.jetstream().pull_subscribe("jobs", durable=durable, stream=stream)
    beat = (await sub.consumer_info()).config.ack_wait / 3
    while not stopping.is_set():
        try:
            msgs = await sub.fetch(1, timeout=0.5)
        except FetchTimeout:
            continue
        except Exception:  # the server is away: the client reconnects by itself, so try again
            await asyncio.sleep(0.2)
            continue
        for msg in msgs:
            job = json.loads(msg.data)
            running = asyncio.ensure_future(asyncio.to_thread(jobs.run, job["id"], job["s"]))
            while not (await asyncio.wait({running}, timeout=beat))[0]:
                try:
                    await msg.in_progress()
                except Exception:  # the server is away: the job goes on, its ack is tried after it
                    pass
            running.result()
            try:
                await msg.ack_sync()
            except Exception:  # not acknowledged: JetStream delivers it again after ack_wait
                pass
    await nc.close()  # acks were confirmed (ack_sync); drain() waits on the pull subscription

asyncio.run(main())
"""

# BullMQ, concurrency 1; SIGTERM closes the worker (the job in hand finishes) and exits. The lock and the stalled
# check are BullMQ's defaults unless the env says otherwise (test_grace.py: a dead worker's job comes back sooner).
BULLMQ_WORKER = """\
const { Worker } = require('bullmq');
const IORedis = require('ioredis');
const count = new IORedis(process.env.COUNT_URL);
const replica = process.env.STACKBLAZE_REPLICA || '?';
const url = new URL(process.env.BROKER_URL);
const connection = { host: url.hostname, port: Number(url.port) };
const worker = new Worker(process.env.QUEUE, async (job) => {
  const { id, s } = job.data;
  await count.pipeline().sadd('started', id).hincrby('starts', id, 1).hset('holder', replica, id).exec();
  await new Promise((r) => setTimeout(r, s * 1000));
  await count.pipeline().hincrby('runs', id, 1).hset('by', id, replica).sadd('done', id).hdel('holder', replica)
    .exec();
}, { connection, concurrency: 1, lockDuration: Number(process.env.BULL_LOCK_DURATION_MS || 30000),
      stalledInterval: Number(process.env.BULL_STALLED_INTERVAL_MS || 30000) });
process.on('SIGTERM', async () => { await worker.close(); await count.quit(); process.exit(0); });
"""

# The test's BullMQ client: `node bull.js PORT JSON-OPS` runs add / bulk / pause ops in order and exits.
BULL_CLIENT = """\
const { Queue } = require('bullmq');
const [port, ops] = process.argv.slice(2);
const connection = { host: '127.0.0.1', port: Number(port) };
(async () => {
  const queues = new Map();
  const queue = (n) => { if (!queues.has(n)) queues.set(n, new Queue(n, { connection })); return queues.get(n); };
  for (const op of JSON.parse(ops)) {
    if (op.op === 'bulk') {
      for (let i = 0; i < op.ids.length; i += 1000) {
        await queue(op.queue).addBulk(op.ids.slice(i, i + 1000).map((id) => ({ name: 'run', data: { id, s: op.s } })));
      }
    } else if (op.op === 'add') await queue(op.queue).add('run', { id: op.id, s: op.s }, op.opts || {});
    else if (op.op === 'pause') await queue(op.queue).pause();
    else throw new Error(`unknown op ${op.op}`);
  }
  for (const q of queues.values()) await q.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


@dataclass
class Broker:
    """Where a kind's queue lives: `url` for the spec's queues block (what the reader reads), `env` for the
    worker (its library's own address)."""

    url: str
    env: dict[str, str] = field(default_factory=dict)
    amqp: str = ""
    nats: str = ""
    server: object = None  # the broker's own handle (brokers.py), for a test that stops and restarts it


@dataclass
class Kind:
    name: str
    queue: str  # the spec's `names: [...]` entry
    start: str
    files: dict[str, str]
    node_modules: Path | None = None

    def __post_init__(self) -> None:
        self.files.setdefault("busy.py", BUSY_PROBE)

    def enqueue(self, broker: Broker, ids: Sequence[int], seconds: float) -> None:
        """Put `ids` on the queue with this kind's library (fast paths: one pipeline, addBulk)."""
        send = _SENDERS[self.name]
        send(self, broker, list(ids), seconds)


def kind(name: str, *, node_modules: Path | None = None) -> Kind:
    py = sys.executable
    if name == "redis-list":
        return Kind(name, "jobs", f"{py} -u worker.py", {"worker.py": REDIS_LIST_WORKER})
    if name == "rq":
        return Kind(name, "default", f"{py} -u worker.py", {"worker.py": RQ_WORKER})
    if name == "celery":
        return Kind(name, "orders", f"{py} " + CELERY_START.format(queue="orders"), {"tasks.py": CELERY_APP})
    if name == "dramatiq":
        return Kind(name, "default", f"{py} {DRAMATIQ_START}", {"tasks.py": DRAMATIQ_APP})
    if name == "rabbitmq":
        return Kind(name, "jobs", f"{py} -u worker.py", {"worker.py": RABBITMQ_WORKER})
    if name == "nats":
        return Kind(name, "JOBS/workers", f"{py} -u worker.py", {"worker.py": NATS_WORKER})
    if name == "bullmq":
        assert node_modules is not None
        return Kind(name, "work", f"{need('node')} worker.js", {"worker.js": BULLMQ_WORKER},
                    node_modules=node_modules)
    raise ValueError(name)


def _redis_list(kind: Kind, broker: Broker, ids: list[int], seconds: float) -> None:
    conn = redis.Redis.from_url(broker.url)
    for at in range(0, len(ids), 1000):
        conn.lpush(kind.queue, *(json.dumps({"id": i, "s": seconds}) for i in ids[at:at + 1000]))


def _rq(kind: Kind, broker: Broker, ids: list[int], seconds: float) -> None:
    from rq import Queue

    queue = Queue(kind.queue, connection=redis.Redis.from_url(broker.url))
    for at in range(0, len(ids), 500):
        queue.enqueue_many([Queue.prepare_data("jobs.run", (i, seconds), timeout=3600) for i in ids[at:at + 500]])


def _celery(kind: Kind, broker: Broker, ids: list[int], seconds: float) -> None:
    from celery import Celery  # type: ignore[import-untyped]

    app = Celery("sender", broker=broker.url)
    with app.producer_or_acquire() as producer:
        for i in ids:
            app.send_task("jobs.run", (i, seconds), queue=kind.queue, producer=producer)
    app.close()


def _dramatiq(kind: Kind, broker: Broker, ids: list[int], seconds: float) -> None:
    from dramatiq import Message
    from dramatiq.brokers.redis import RedisBroker

    sender = RedisBroker(url=broker.url)  # type: ignore[no-untyped-call]
    try:
        for i in ids:
            sender.enqueue(Message(queue_name=kind.queue, actor_name="run", args=(i, seconds), kwargs={},
                                   options={}))
    finally:
        sender.close()


def _rabbitmq(kind: Kind, broker: Broker, ids: list[int], seconds: float) -> None:
    import pika  # type: ignore[import-untyped]

    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp))
    try:
        channel = conn.channel()
        for i in ids:
            channel.basic_publish("", kind.queue, json.dumps({"id": i, "s": seconds}).encode(),
                                  pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


def _nats(kind: Kind, broker: Broker, ids: list[int], seconds: float) -> None:
    import nats

    async def send() -> None:
        nc = await nats.connect(broker.nats)
        js = nc.jetstream()
        for at in range(0, len(ids), 200):
            await asyncio.gather(*(js.publish("jobs", json.dumps({"id": i, "s": seconds}).encode())
                                   for i in ids[at:at + 200]))
        await nc.close()

    asyncio.run(send())


def bull(kind: Kind, broker: Broker, *ops: dict[str, object]) -> None:
    assert kind.node_modules is not None
    port = broker.url.rsplit(":", 1)[1].split("/")[0]
    subprocess.run([need("node"), "bull.js", port, json.dumps(ops)], cwd=kind.node_modules.parent, check=True,
                   timeout=120)


def _bullmq(kind: Kind, broker: Broker, ids: list[int], seconds: float) -> None:
    bull(kind, broker, {"op": "bulk", "queue": kind.queue, "ids": ids, "s": seconds})


_SENDERS = {"redis-list": _redis_list, "rq": _rq, "celery": _celery, "dramatiq": _dramatiq, "rabbitmq": _rabbitmq,
            "nats": _nats, "bullmq": _bullmq}


async def make_stream(nats_url: str, stream: str, durable: str, *, ack_wait: float = 60) -> None:
    """The JetStream stream (subject `jobs`) and the durable pull consumer the workers share (an unacknowledged
    message is delivered again `ack_wait` seconds after it was last delivered or said in progress)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=["jobs"])
    await js.add_consumer(stream, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                                 ack_wait=ack_wait))
    await nc.close()
