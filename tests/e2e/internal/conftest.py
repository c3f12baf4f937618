"""Fixtures of the internal-services suite: one real daemon (root, its servers as stackblaze-worker) in a home of
the package's own, and the `shop` project deployed once on it for the whole package (a deploy with pip, npm and
Go builds costs seconds even from warm caches). The tests run in file order and each leaves `shop` running.

A real SMTP server (tests/e2e/brokers/smtp_sink.py) takes the BullMQ example's mail; /etc/hosts is hashed before
anything is deployed, for the tests that say it was never touched.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.brokers.smtp_sink import SmtpSink
from tests.e2e.internal.shop import Project, make_shop
from tests.integration.conftest import free_port, reachable_home
from tests.tools import need


def etc_hosts_digest() -> str:
    return hashlib.sha256(Path("/etc/hosts").read_bytes()).hexdigest()


@dataclass
class Shop(Project):
    sink: SmtpSink
    base: Path  # the home's 0711 parent: room for more projects on the same daemon
    hosts_before: str  # /etc/hosts' sha256 before the package deployed anything


@pytest.fixture(scope="package")
def shop() -> Iterator[Shop]:
    for tool in ("redis-server", "postgres", "psql", "ss", "nsenter", "getent"):
        if shutil.which(tool) is None:
            need(tool, "the internal-services suite runs the machine's own servers and tools")
    need("node")
    need("npm")
    need("go")
    hosts_before = etc_hosts_digest()
    sink = SmtpSink(port=free_port(), delay=0)
    sink.start()
    try:
        with reachable_home("sb-internal-") as (sb, base):
            root = make_shop(base / "shop", name="shop", smtp_port=sink.port)
            project = Shop(sb, root, sink, base, hosts_before)
            started = time.monotonic()
            project.deploy()
            print(f"\nshop (cache, db, orders, email, counter) deployed in {time.monotonic() - started:.1f}s")
            project.wait_running("cache", "db", "orders", "email", "counter")
            yield project
    finally:
        sink.stop()
    # After the daemon, its servers and workers are gone: the host's file is still the one it was.
    assert etc_hosts_digest() == hosts_before, "/etc/hosts changed during the suite"
