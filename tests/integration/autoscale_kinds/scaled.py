"""The autoscaling acceptance machinery (issue 16) as plain context managers, so that the tests (conftest.py wraps
them in fixtures) and bench/autoscale_burst.py run the same thing: a real daemon at a chosen time scale, a
redis-server, the broker of each kind on free loopback ports (all stopped by PID), bullmq from npm as
examples/bullmq-email locks it, and `Scaled`: one autoscaled worker deployed and watched through the daemon's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import redis

from stackblaze.spec.autoscale import SCALE_UP
from tests.integration.autoscale_kinds.kinds import BULL_CLIENT, JOBS, Broker, Kind, kind, make_stream
from tests.integration.autoscale_readers.brokers import nats_server, rabbitmq_server, stop
from tests.integration.conftest import Stackblaze, free_port, wait_for, write_project
from tests.tools import need

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bullmq-email"
KINDS = ("redis-list", "rq", "celery", "dramatiq", "bullmq", "rabbitmq", "nats")


@contextlib.contextmanager
def stackblaze_home(home: Path, scale: float) -> Iterator[Stackblaze]:
    """A real daemon + runner (started by the first CLI command) in `home` at STACKBLAZE_TIME_SCALE=`scale`, its
    workers as root; everything it started is stopped by PID on the way out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
    env.update({"STACKBLAZE_HOME": str(home), "STACKBLAZE_TIME_SCALE": repr(scale), "STACKBLAZE_WORKER_USER": "root"})
    tool = Stackblaze(home=home, env=env)
    try:
        yield tool
    finally:
        tool.tear_down()


@contextlib.contextmanager
def redis_at(data: Path) -> Iterator[str]:
    """A redis-server without password or persistence on a free loopback port (the Redis kinds' broker and where
    jobs count themselves), stopped by PID; its url."""
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([need("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        wait_for("redis-server to answer", lambda: _pings(client), timeout=10)
        client.close()
        yield url
    finally:
        stop(proc)


@contextlib.contextmanager
def broker_of(name: str, data: Path, redis_url: str, *, ack_wait: float = 60) -> Iterator[Broker]:
    """The broker of a kind: `redis_url` for the Redis kinds, else a rabbitmq-server (management plugin) with the
    queue declared, or a nats-server with the stream and consumer (its `ack_wait`) made, stopped on the way out."""
    if name == "rabbitmq":
        with rabbitmq_server(data / "rabbitmq") as server:
            amqp = f"amqp://guest:guest@127.0.0.1:{server.amqp_port}/%2F"
            import pika  # type: ignore[import-untyped]

            conn = pika.BlockingConnection(pika.URLParameters(amqp))
            conn.channel().queue_declare("jobs", durable=True)
            conn.close()
            yield Broker(server.url(), {"AMQP_URL": amqp}, amqp=amqp)
    elif name == "nats":
        with nats_server(data / "jetstream") as nats:
            asyncio.run(make_stream(nats.client_url, "JOBS", "workers", ack_wait=ack_wait))
            yield Broker(nats.url, {"NATS_URL": nats.client_url}, nats=nats.client_url, server=nats)
    else:
        yield Broker(redis_url, {"BROKER_URL": redis_url})


def install_bullmq(target: Path) -> Path:
    """bullmq (and its ioredis) as examples/bullmq-email pins them, `npm ci` into `target` unless already there,
    plus the test's client bull.js beside it; the node_modules path."""
    need("node")
    npm = need("npm")
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "node_modules" / "bullmq").is_dir():
        for name in ("package.json", "package-lock.json"):
            shutil.copy(EXAMPLE / name, target / name)
        subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=target, check=True, timeout=300)
    (target / "bull.js").write_text(BULL_CLIENT)
    return target / "node_modules"


@dataclass
class Scaled:
    """One autoscaled worker of a kind, deployed by the real CLI; watched through the daemon's API (cheap, unlike
    a CLI process per look, which would steal CPU from the workers on a 2-core machine)."""

    sb: Stackblaze
    kind: Kind
    broker: Broker
    count: redis.Redis
    scale: float
    _http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.sb.home / "api.sock")),
                                  base_url="http://stackblaze", timeout=30)

    def deploy(self, app: Path) -> None:
        self.sb.run("deploy", str(app), timeout=300)

    def get(self, path: str, **params: Any) -> Any:
        answer = self._http.get(path, params={"project": "scaled", **params})
        answer.raise_for_status()
        return answer.json()

    def service(self) -> dict[str, Any]:
        return self.get("/v1/ps", service="worker")["services"][0]  # type: ignore[no-any-return]

    def replicas(self) -> list[dict[str, Any]]:
        return self.service()["replicas"]  # type: ignore[no-any-return]

    def running(self) -> int:
        return sum(1 for r in self.replicas() if r["state"] == "running")

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get("/v1/events", service="worker", limit=1000)["events"]
        return [e for e in found if not kinds or e["kind"] in kinds]

    def kills(self) -> list[dict[str, Any]]:
        """drain-killed events, and any exit of this service by SIGKILL after its grace."""
        return [e for e in self.events("drain-killed", "exit")
                if e["kind"] == "drain-killed" or e["details"].get("killed_after_grace")]

    def decisions(self, n: int = 200) -> list[dict[str, Any]]:
        """The loop's decisions, newest first (`autoscale why --json`)."""
        return self.get("/v1/services/worker/autoscale", n=n)["decisions"]  # type: ignore[no-any-return]

    def runs(self) -> dict[int, int]:
        """job id -> times it completed (jobs.py counts them)."""
        return {int(k): int(v) for k, v in cast(dict[bytes, bytes], self.count.hgetall("runs")).items()}

    def done(self) -> int:
        return self.size("done")

    def size(self, key: str) -> int:
        """How many jobs are in the set `key` ("started", "done")."""
        return int(cast(int, self.count.scard(key)))

    def has(self, key: str, job: int) -> bool:
        """Whether job `job` is in the set `key` ("started", "done")."""
        return bool(self.count.sismember(key, str(job)))

    def ran_by(self) -> set[str]:
        """The replicas that ran a job (jobs.py notes each one's)."""
        return {v.decode() for v in cast(list[bytes], self.count.hvals("by"))}

    def enqueue(self, ids: range | list[int], seconds: float) -> None:
        self.kind.enqueue(self.broker, ids, seconds)

    def close(self) -> None:
        self._http.close()


def scaled_project(tmp_path: Path, sb: Stackblaze, k: Kind, broker: Broker, count_url: str, *, autoscale: str,
                   grace: str, extra_env: dict[str, str] | None = None, names: tuple[str, ...] = ()) -> Path:
    """A project `scaled` with one worker of kind `k`, autoscaled on its queue (or on `names`); `autoscale` is the
    block's body (min, max, poll, ...) as YAML lines indented by 6."""
    env = {"COUNT_URL": count_url, "QUEUE": k.queue, "STACKBLAZE_TEST_HOME": str(sb.home), **broker.env,
           **(extra_env or {})}
    if k.node_modules is not None:
        env["NODE_PATH"] = str(k.node_modules)
    lines = "".join(f'  {key}: "{value}"\n' for key, value in env.items())
    spec = f"""\
project: scaled
env:
{lines}services:
  - name: worker
    type: worker
    start: {k.start}
    shutdown_grace: {grace}
    min_ready: 1s
    autoscale:
      queues: {{kind: {k.name}, url: "{broker.url}", names: {json.dumps(list(names or (k.queue,)))}}}
{autoscale}"""
    files = dict(k.files)
    if k.name != "bullmq":
        files["jobs.py"] = JOBS
    return write_project(tmp_path / "app", spec, files)


@contextlib.contextmanager
def deployed(root: Path, name: str, *, scale: float, autoscale: str, grace: str, redis_url: str,
             node_modules: Path | None = None, env: dict[str, str] | None = None, names: tuple[str, ...] = (),
             settle: bool = True, ack_wait: float = 60) -> Iterator[Scaled]:
    """Kind `name`'s broker started (NATS: its consumer's `ack_wait`), its worker deployed in a daemon of its own
    under `root` at time scale `scale`, and idle at 0 (or at min) before the caller goes on (`settle`); all of it
    stopped on the way out."""
    with contextlib.ExitStack() as stack:
        k = kind(name, node_modules=node_modules)
        broker = stack.enter_context(broker_of(name, root, redis_url, ack_wait=ack_wait))
        sb = stack.enter_context(stackblaze_home(root / "home", scale))
        app = scaled_project(root, sb, k, broker, redis_url, autoscale=autoscale, grace=grace, extra_env=env,
                             names=names)
        worker = Scaled(sb, k, broker, redis.Redis.from_url(redis_url), scale)
        stack.callback(worker.close)
        worker.deploy(app)
        if settle:
            low = worker.service().get("autoscale", {}).get("min", 0)
            wait_for(f"{name} settled at {low}", lambda: worker.running() == low and len(worker.replicas()) == low,
                     60, interval=0.2)
        yield worker


def at_zero_for_the_up_window(worker: Scaled) -> None:
    """Idle at 0 means sat at 0: the scale-up window holds the lowest recommendation it saw, and the ones made
    as the deploy's replica went to 0 (1 replica for no work) would hold a burst that comes within the window at
    1 replica (measured: 8 replicas at 24.6 s instead of ~17 s at time scale 1), as the HPA's window does."""
    window = SCALE_UP.window * worker.scale
    last = next(d for d in worker.decisions() if d["current"] > 0)  # newest first
    wait_for("the worker at 0 for the scale-up window", lambda: time.time() - last["at"] > window, window + 10)


class Clock:
    """Seconds since the reference moment, for the figures printed."""

    def __init__(self) -> None:
        self.zero = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.zero


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
