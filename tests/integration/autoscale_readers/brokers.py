"""Real brokers of a test's own on free loopback ports, each stopped by its PID: redis-server (with a password),
rabbitmq-server with its management plugin (and an epmd of its own), nats-server with JetStream; and `Poller`,
one reader driven from sync test code, timing each read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stackblaze.engine.autoscale.readers import open_reader
from stackblaze.engine.autoscale.work import Work
from stackblaze.spec.autoscale import QueueKind, Queues
from tests.integration.conftest import free_port, wait_for
from tests.tools import missing, need

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # /usr/sbin's wrapper su's to rabbitmq as root
RABBITMQ_INSTALL = "apt-get install -y rabbitmq-server"


@dataclass
class Poller:
    """One reader, kept open across polls on its own event loop, as the control loop keeps it."""

    queues: Queues
    latencies: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner = asyncio.Runner()
        self._reader = open_reader(self.queues, timeout=2.0)

    def read(self, now: float | None = None) -> Work:
        started = time.perf_counter()
        work = self._runner.run(self._reader.read(time.time() if now is None else now))
        self.latencies.append(time.perf_counter() - started)
        return work

    def until(self, what: str, check: object, timeout: float = 20.0) -> Work:
        """Poll until `check(work)` holds; fail naming `what` and the last reading."""
        assert callable(check)
        found: Work = wait_for(what, lambda: (lambda w: w if check(w) else None)(self.read()), timeout=timeout,
                               interval=0.1)
        return found

    def close(self) -> None:
        self._runner.run(self._reader.close())
        self._runner.close()

    def report(self) -> str:
        warm = sorted(self.latencies[1:]) or self.latencies
        return (f"{self.queues.kind}: {len(self.latencies)} reads, first {self.latencies[0] * 1000:.2f} ms, "
                f"median after {warm[len(warm) // 2] * 1000:.2f} ms")


@contextlib.contextmanager
def polling(kind: QueueKind, url: str, *names: str) -> Iterator[Poller]:
    poller = Poller(Queues(kind, url, names))
    try:
        yield poller
    finally:
        if poller.latencies:
            print("\n" + poller.report())
        poller.close()


def stop(proc: subprocess.Popen[bytes], *, group: bool = False, timeout: float = 30) -> None:
    """SIGTERM (to its process group when it started one), then SIGKILL after `timeout`."""
    if proc.poll() is not None:
        return
    kill = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    with contextlib.suppress(ProcessLookupError):
        kill(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            kill(signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class RedisServer:
    port: int
    password: str
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def redis_server(data: Path, password: str) -> Iterator[RedisServer]:
    import redis

    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([need("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(data), "--requirepass", password],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=password)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_for("redis-server to answer", pings, timeout=10)
        yield RedisServer(port, password, proc)
    finally:
        client.close()
        stop(proc)


@dataclass
class RabbitMQ:
    amqp_port: int
    api_port: int

    def url(self, vhost: str = "%2F", user: str = "guest", password: str = "guest") -> str:
        """The management url as a user writes it (the reader's only way in: AMQP is for the tests' publishers
        and consumers)."""
        return f"http://{user}:{password}@127.0.0.1:{self.api_port}/{vhost}"


@contextlib.contextmanager
def rabbitmq_server(home: Path) -> Iterator[RabbitMQ]:
    """A rabbitmq-server node of its own (name, ports, mnesia, logs, cookie, epmd) with the management plugin at
    its defaults, statistics every 5 s included: the reader's counts do not wait for them. Boots in about 5 s."""
    need("rabbitmq-server", RABBITMQ_INSTALL)
    if not RABBITMQ_SERVER.exists():
        missing(f"{RABBITMQ_SERVER} is not installed here", RABBITMQ_INSTALL)
    epmd_path = need("epmd", RABBITMQ_INSTALL)
    home.mkdir(parents=True, exist_ok=True)
    amqp, api, dist, epmd_port = free_port(), free_port(), free_port(), free_port()
    (home / "enabled_plugins").write_text("[rabbitmq_management].\n")
    (home / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{amqp}\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {api}\n"
        "loopback_users = none\n")
    # Its own epmd in the foreground (a child we stop), so that the node does not start a daemon that outlives
    # the test on the shared port 4369.
    epmd = subprocess.Popen([epmd_path, "-port", str(epmd_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {**os.environ, "HOME": str(home), "ERL_EPMD_PORT": str(epmd_port),
           "RABBITMQ_NODENAME": f"sbtest{amqp}@localhost", "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
           "RABBITMQ_NODE_PORT": str(amqp), "RABBITMQ_DIST_PORT": str(dist),
           "RABBITMQ_MNESIA_BASE": str(home / "mnesia"), "RABBITMQ_LOG_BASE": str(home / "log"),
           "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
           "RABBITMQ_PID_FILE": str(home / "rabbit.pid"), "RABBITMQ_LOGS": "-"}
    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen([str(RABBITMQ_SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{api}/api/overview", auth=("guest", "guest"),
                                 timeout=2).status_code == 200
            except httpx.HTTPError:
                assert server.poll() is None, (home / "server.log").read_text()[-2000:]
                return False

        wait_for("rabbitmq-server's management API", answers, timeout=90, interval=0.25)
        yield RabbitMQ(amqp, api)
    finally:
        stop(server, group=True)
        stop(epmd)


@dataclass
class Nats:
    port: int
    monitor_port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def client_url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@contextlib.contextmanager
def nats_server(store: Path) -> Iterator[Nats]:
    path = need("nats-server", "apt-get install -y nats-server")
    port, monitor = free_port(), free_port()
    proc = subprocess.Popen([path, "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor), "-sd", str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{monitor}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("nats-server's monitoring port", healthy, timeout=20)
        yield Nats(port, monitor, proc)
    finally:
        stop(proc)
