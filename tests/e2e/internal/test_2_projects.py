"""Two projects on one daemon, each with its own `cache`: shop, and examples/celery-orders deployed exactly as a
user has it (its own stackblaze.yaml, nothing set: the example is self-contained). The same name answers two
different servers, and what one project's worker writes is absent from the other's Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.e2e.brokers.conftest import copy_example
from tests.e2e.internal.conftest import Shop
from tests.e2e.internal.shop import Project, getent
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.timeout(300)
ORDERS = [f"order-{n}" for n in range(9001, 9021)]


@pytest.fixture(scope="module")
def example(shop: Shop) -> Iterator[Project]:
    project = Project(shop.sb, copy_example("celery-orders", shop.base / "other"))
    started = time.monotonic()
    project.deploy()
    print(f"\nexamples/celery-orders deployed as is in {time.monotonic() - started:.1f}s")
    project.wait_running("cache", "worker")
    yield project
    project.run("destroy", "--yes", "--disks", timeout=120)


def test_each_project_has_its_own_cache_internal(shop: Shop, example: Project) -> None:
    ours, theirs = shop.address("cache"), example.address("cache")
    assert ours != theirs
    answers = {"shop": getent(shop.pid("orders"), "cache.internal"),
               "celery-orders": getent(example.pid("worker"), "cache.internal")}
    print(f"cache.internal answers {answers}")
    assert answers == {"shop": ours, "celery-orders": theirs}

    # The example's own enqueue program, at its Redis's address; its worker runs them through cache.internal.
    address = f"redis://{theirs}:6379/0"
    example.one_off("worker", "python", "enqueue.py", str(len(ORDERS)), "9001", env={"REDIS_URL": address})
    other = example.redis()
    wait_for("the example's worker to process its orders",
             lambda: all(other.hmget("orders:processed", ORDERS)), timeout=60, interval=0.2)
    results = [json.loads(raw)["status"] for raw in other.mget([f"celery-task-meta-{o}" for o in ORDERS])]
    assert results == ["SUCCESS"] * len(ORDERS)

    # None of it in shop's Redis (which has orders of its own: the same key names, other fields) ...
    mine = shop.redis()
    assert not any(mine.hmget("orders:processed", ORDERS))
    assert mine.exists(*[f"celery-task-meta-{o}" for o in ORDERS]) == 0
    # ... and the Go worker's keys of shop are absent from the example's.
    assert mine.get("go:resolved") == ours and other.exists("go:resolved", "go:done") == 0
    print(f"{len(ORDERS)} orders of celery-orders in its Redis ({theirs}), none in shop's ({ours})")
