"""Fixtures of the queue readers' tests: real brokers (redis_url comes from tests/integration/conftest.py),
BullMQ from npm as examples/bullmq-email locks it, and workers of the real libraries that hold jobs until the
test lets them go."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.autoscale_readers.brokers import Nats, RabbitMQ, nats_server, rabbitmq_server, stop
from tests.tools import need

HERE = Path(__file__).resolve().parent
BULLMQ_EXAMPLE = HERE.parents[2] / "examples" / "bullmq-email"

# The job every library's worker runs here: it holds its slot until the test creates RELEASE (or 60 s pass),
# so that "in flight" is a state the test controls, not a race against a sleep.
TASKS = """\
import os, pathlib, time

RELEASE = pathlib.Path(os.environ["RELEASE"])


def block(*args):
    deadline = time.monotonic() + 60
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One rabbitmq-server per module: it takes seconds to boot. Each test uses queues of its own."""
    with rabbitmq_server(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Nats]:
    with nats_server(tmp_path / "jetstream") as server:
        yield server


@pytest.fixture(scope="session")
def bullmq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bullmq as examples/bullmq-email pins it (npm ci from its lock file), plus tests' client script."""
    need("node")
    npm = need("npm")
    target = tmp_path_factory.mktemp("bullmq")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(BULLMQ_EXAMPLE / name, target / name)
    shutil.copy(HERE / "bullmq_client.js", target / "bullmq_client.js")
    subprocess.run([npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=target, check=True, timeout=300)
    return target


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    """The file whose creation lets every held job finish; created at teardown so that workers stop fast."""
    path = tmp_path / "release"
    yield path
    path.touch()


@pytest.fixture
def workers(tmp_path: Path, release: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts (append to the list), stopped by PID at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    release.touch()
    for proc in started:
        stop(proc, group=True, timeout=15)


def python_worker(tmp_path: Path, release: Path, *command: str, extra: str = "", broker: str = ""
                  ) -> subprocess.Popen[bytes]:
    """`python -m <command>` in a directory holding tasks.py (TASKS + `extra`; BROKER in its env), in a session
    of its own."""
    work = tmp_path / "worker"
    work.mkdir(exist_ok=True)
    (work / "tasks.py").write_text(TASKS + extra)
    env = {**os.environ, "RELEASE": str(release), "PYTHONPATH": str(work), "BROKER": broker}
    with open(tmp_path / "worker.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", *command], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
