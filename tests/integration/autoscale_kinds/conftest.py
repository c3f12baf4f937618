"""Fixtures of the autoscaling acceptance suite (issue 16): a real daemon at a time scale the test chooses, the
brokers of each kind started per test on free loopback ports (stopped by PID), bullmq from npm as
examples/bullmq-email locks it, and `Scaled`: one autoscaled worker deployed and watched through the daemon's API.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.integration.autoscale_kinds.kinds import BULL_CLIENT, JOBS, Broker, Kind, kind, make_stream
from tests.integration.autoscale_readers.brokers import nats_server, rabbitmq_server
from tests.integration.conftest import Stackblaze, wait_for, write_project
from tests.tools import need

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bullmq-email"
KINDS = ("redis-list", "rq", "celery", "dramatiq", "bullmq", "rabbitmq", "nats")


@pytest.fixture
def make_sb(tmp_path: Path) -> Iterator[Callable[[float], Stackblaze]]:
    """A real daemon + runner in a temp home at STACKBLAZE_TIME_SCALE=`scale` (the `sb` fixture's, with the
    scale chosen by the test); torn down by PID."""
    made: list[Stackblaze] = []

    def make(scale: float) -> Stackblaze:
        home = tmp_path / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STACKBLAZE_")}
        env.update({"STACKBLAZE_HOME": str(home), "STACKBLAZE_TIME_SCALE": repr(scale),
                    "STACKBLAZE_WORKER_USER": "root"})
        made.append(Stackblaze(home=home, env=env))
        return made[-1]

    yield make
    for tool in made:
        tool.tear_down()


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bullmq (and its ioredis) as examples/bullmq-email pins them: npm ci from its lock file, plus bull.js."""
    need("node")
    npm = need("npm")
    target = tmp_path_factory.mktemp("bullmq")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(EXAMPLE / name, target / name)
    (target / "bull.js").write_text(BULL_CLIENT)
    subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=target, check=True, timeout=300)
    return target / "node_modules"


@pytest.fixture
def count(redis_url: str) -> redis.Redis:
    """The test's own Redis where jobs count themselves (and the Redis kinds' broker)."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def broker_for(tmp_path: Path, redis_url: str) -> Iterator[Callable[[str], Broker]]:
    """The broker of a kind, started for this test: the test's Redis for the Redis kinds, else a rabbitmq-server
    (management plugin) with the queue declared, or a nats-server with the stream and consumer made."""
    stack: list[Any] = []

    def start(name: str) -> Broker:
        if name == "rabbitmq":
            manager = rabbitmq_server(tmp_path / "rabbitmq")
            server = manager.__enter__()
            stack.append(manager)
            amqp = f"amqp://guest:guest@127.0.0.1:{server.amqp_port}/%2F"
            import pika

            conn = pika.BlockingConnection(pika.URLParameters(amqp))
            conn.channel().queue_declare("jobs", durable=True)
            conn.close()
            return Broker(server.url(), {"AMQP_URL": amqp}, amqp=amqp)
        if name == "nats":
            manager = nats_server(tmp_path / "jetstream")
            server = manager.__enter__()
            stack.append(manager)
            asyncio.run(make_stream(server.client_url, "JOBS", "workers"))
            return Broker(server.url, {"NATS_URL": server.client_url}, nats=server.client_url, server=server)
        return Broker(redis_url, {"BROKER_URL": redis_url})

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


@dataclass
class Scaled:
    """One autoscaled worker of a kind, deployed by the real CLI; the test watches it through the daemon's API
    (cheap, unlike a CLI process per look, which would steal CPU from the workers on a 2-core machine)."""

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
        found = self.get("/v1/events", service="worker", limit=1000)["events"]
        return [e for e in found if not kinds or e["kind"] in kinds]

    def kills(self) -> list[dict[str, Any]]:
        """drain-killed events, and any exit of this service by SIGKILL after its grace."""
        return [e for e in self.events("drain-killed", "exit")
                if e["kind"] == "drain-killed" or e["details"].get("killed_after_grace")]

    def decisions(self, n: int = 200) -> list[dict[str, Any]]:
        """The loop's decisions, newest first (`autoscale why --json`)."""
        return self.get("/v1/services/worker/autoscale", n=n)["decisions"]  # type: ignore[no-any-return]

    def runs(self) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.count.hgetall("runs").items()}

    def done(self) -> int:
        return int(self.count.scard("done"))

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


@pytest.fixture
def scaled(tmp_path: Path, make_sb: Callable[[float], Stackblaze], broker_for: Callable[[str], Broker],
           count: redis.Redis, redis_url: str, node_modules_lazy: Callable[[], Path]
           ) -> Iterator[Callable[..., Scaled]]:
    """`scaled(kind, scale=, autoscale=, grace=)`: the kind's broker started, its worker deployed at that time
    scale, and idle at 0 (or at min) before the test goes on."""
    made: list[Scaled] = []

    def make(name: str, *, scale: float, autoscale: str, grace: str, env: dict[str, str] | None = None,
             names: tuple[str, ...] = (), settle: bool = True) -> Scaled:
        k = kind(name, node_modules=node_modules_lazy() if name == "bullmq" else None)
        broker = broker_for(name)
        sb = make_sb(scale)
        app = scaled_project(tmp_path, sb, k, broker, redis_url, autoscale=autoscale, grace=grace, extra_env=env,
                             names=names)
        made.append(Scaled(sb, k, broker, count, scale))
        made[-1].deploy(app)
        if settle:
            low = made[-1].service().get("autoscale", {}).get("min", 0)
            wait_for(f"{name} settled at {low}", lambda: made[-1].running() == low and
                     len(made[-1].replicas()) == low, 60, interval=0.2)
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def node_modules_lazy(request: pytest.FixtureRequest) -> Callable[[], Path]:
    """node_modules only when a test asks for the bullmq kind (npm ci costs seconds)."""
    return lambda: request.getfixturevalue("node_modules")  # type: ignore[no-any-return]



class Clock:
    """Seconds since the test's reference moment, for the figures it prints."""

    def __init__(self) -> None:
        self.zero = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.zero
