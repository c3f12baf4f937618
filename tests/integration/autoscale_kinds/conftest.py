"""Fixtures of the autoscaling acceptance suite (issue 16), each wrapping a context manager of scaled.py (which
bench/autoscale_burst.py uses as well): a real daemon at a time scale the test chooses, the brokers of each kind
started per test on free loopback ports (stopped by PID), bullmq from npm as examples/bullmq-email locks it, and
`scaled(...)`: one autoscaled worker deployed and watched through the daemon's API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.autoscale_kinds.kinds import Broker
from tests.integration.autoscale_kinds.scaled import Scaled, broker_of, deployed, install_bullmq, stackblaze_home
from tests.integration.conftest import Stackblaze


@pytest.fixture
def make_sb(tmp_path: Path) -> Iterator[Callable[[float], Stackblaze]]:
    """A real daemon + runner in a temp home at STACKBLAZE_TIME_SCALE=`scale` (the `sb` fixture's, with the
    scale chosen by the test); torn down by PID."""
    with contextlib.ExitStack() as stack:
        yield lambda scale: stack.enter_context(stackblaze_home(tmp_path / "home", scale))


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bullmq (and its ioredis) as examples/bullmq-email pins them: npm ci from its lock file, plus bull.js."""
    return install_bullmq(tmp_path_factory.mktemp("bullmq"))


@pytest.fixture
def count(redis_url: str) -> redis.Redis:
    """The test's own Redis where jobs count themselves (and the Redis kinds' broker)."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def broker_for(tmp_path: Path, redis_url: str) -> Iterator[Callable[[str], Broker]]:
    """The broker of a kind, started for this test: the test's Redis for the Redis kinds, else a rabbitmq-server
    (management plugin) with the queue declared, or a nats-server with the stream and consumer made."""
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(broker_of(name, tmp_path, redis_url))


@pytest.fixture
def scaled(tmp_path: Path, redis_url: str, node_modules_lazy: Callable[[], Path]) -> Iterator[Callable[..., Scaled]]:
    """`scaled(kind, scale=, autoscale=, grace=, env=, names=, settle=)`: the kind's broker started, its worker
    deployed at that time scale, and idle at 0 (or at min) before the test goes on."""
    with contextlib.ExitStack() as stack:
        def make(name: str, **options: object) -> Scaled:
            modules = node_modules_lazy() if name == "bullmq" else None
            return stack.enter_context(deployed(tmp_path, name, redis_url=redis_url, node_modules=modules,
                                                **options))  # type: ignore[arg-type]

        yield make


@pytest.fixture
def node_modules_lazy(request: pytest.FixtureRequest) -> Callable[[], Path]:
    """node_modules only when a test asks for the bullmq kind (npm ci costs seconds)."""
    return lambda: request.getfixturevalue("node_modules")  # type: ignore[no-any-return]
