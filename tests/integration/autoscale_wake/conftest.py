"""Fixtures of the push-wake tests: the readers' real brokers and BullMQ (re-exported), and a redis-server whose
keyspace notifications are set as the test asks (`notify` flags, CONFIG renamed away when `config` is False)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.integration.autoscale_readers.brokers import stop
from tests.integration.autoscale_readers.conftest import bullmq_dir, nats  # noqa: F401  (fixtures)
from tests.integration.conftest import free_port, wait_for
from tests.tools import need


@contextlib.contextmanager
def redis_with(data: Path, *, notify: str = "", config: bool = True) -> Iterator[str]:
    """A redis-server of the test's own (no persistence, stopped by PID): its url."""
    import redis

    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [need("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(data), "--notify-keyspace-events", notify]
    if not config:  # as managed Redis services do: no CONFIG for clients
        args += ["--rename-command", "CONFIG", ""]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        wait_for("redis-server to answer", pings, timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        stop(proc)
