"""A second Redis (`queue`) added to shop by a deploy while its workers run: `queue.internal` resolves inside them
without a restart (same PIDs), and the Go worker, which has been dialing it twice a second since it started, gets
through within seconds, on its own."""

from __future__ import annotations

import time

import pytest

from tests.e2e.internal.conftest import Shop, etc_hosts_digest
from tests.e2e.internal.shop import QUEUE, WORKERS, Project, getent, write_spec
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.timeout(300)


def test_a_redis_added_by_a_deploy_resolves_in_running_workers(shop: Shop) -> None:
    before = shop.wait_running(*WORKERS)
    releases = {name: shop.release_of(name) for name in WORKERS}
    assert {name: getent(pid, "queue.internal") for name, pid in before.items()} == dict.fromkeys(WORKERS)
    assert shop.redis().get("go:queue-seen") is None

    write_spec(shop.root, name="shop", smtp_port=shop.sink.port, queue=True)
    shop.deploy()
    deployed = time.monotonic()
    address = shop.address("queue")
    assert address.startswith("127.77.") and address != shop.address("cache")

    seen = wait_for("the Go worker to reach queue.internal", lambda: shop.redis("queue").get("seen-by-counter"),
                    timeout=30, interval=0.1)
    print(f"\nqueue.internal ({address}) reached by the running Go worker {time.monotonic() - deployed:.1f}s "
          "after the deploy")
    assert seen == address
    assert shop.redis().get("go:queue-seen") == address
    assert {name: getent(pid, "queue.internal") for name, pid in before.items()} == dict.fromkeys(WORKERS, address)
    now = shop.pids()
    assert {name: now[name] for name in WORKERS} == before, "a worker was restarted"
    assert {name: shop.release_of(name) for name in WORKERS} == releases
    assert getent(None, "queue.internal") is None
    assert etc_hosts_digest() == shop.hosts_before


SOLO = """\
project: solo
services:
  - {{name: cache, type: redis}}
{extra}  - name: worker
    start: python3 -u -c "import time; time.sleep(100000)"
"""


def test_a_redis_added_to_a_one_directory_project_keeps_its_workers(shop: Shop) -> None:
    """The layout of the README and the examples: the spec in the worker's own directory (shop's workers have
    their own `root:`, so its spec is not in their trees). The spec is left out of the release's digest, so the
    worker keeps its release and its process."""
    root = shop.base / "solo"
    root.mkdir()
    (root / "stackblaze.yaml").write_text(SOLO.format(extra=""))
    solo = Project(shop.sb, root)
    try:
        solo.deploy()
        before = solo.wait_running("worker")["worker"]
        (root / "stackblaze.yaml").write_text(SOLO.format(extra=QUEUE))
        solo.deploy()
        address = solo.address("queue")
        assert getent(solo.wait_running("worker")["worker"], "queue.internal") == address
        assert (solo.pid("worker"), solo.release_of("worker")) == (before, 1), "the worker was replaced"
    finally:
        solo.run("destroy", "--yes", "--disks", timeout=120)
