"""Fixtures of the broker tier: the example apps under examples/, deployed by the real CLI (`sb`) against a real
redis-server (`redis_url`) and a real SMTP server (`smtp_sink`), each started by the test on a free loopback port."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.brokers.smtp_sink import SmtpSink
from tests.integration.conftest import Stackblaze, free_port, redis_url  # noqa: F401 (redis)
from tests.integration.test_backing_services import home_sb  # noqa: F401 (the real CLI and daemon)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# Each mail waits this long at the sink, as at a real relay, so that a run of 1,000 lasts some seconds: long
# enough to scale, redeploy and kill in the middle of it.
SMTP_DELAY = 0.03


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port(), delay=SMTP_DELAY)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def sb(home_sb: Stackblaze) -> Stackblaze:  # noqa: F811 (the fixture imported above)
    """The real CLI and daemon, in a home the examples' own Redis (their `cache`, which a root daemon runs as
    stackblaze-worker) can reach; the tests point the workers at their own `redis_url` with `env set`."""
    return home_sb


def copy_example(name: str, into: Path) -> Path:
    """The example as a user has it (no node_modules, no venv): what `stackblaze deploy` starts from."""
    target = into / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("node_modules", "__pycache__", ".venv"))
    return target
