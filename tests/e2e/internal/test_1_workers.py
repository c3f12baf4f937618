"""Python (the Celery example), Node (the BullMQ example, its host the literal 'cache.internal') and Go
(CGO_ENABLED=0) each process 100/100 jobs through redis://cache.internal:6379, counted in Redis; Redis listens
on its 127.77.x.y address only; the host's /etc/hosts is untouched and the host cannot resolve the name."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.internal.conftest import Shop, etc_hosts_digest
from tests.e2e.internal.jobs import Batch, run_batch
from tests.e2e.internal.shop import WORKERS, connected_pids, environ, family, getent, listeners

pytestmark = pytest.mark.timeout(600)  # the package's first test deploys shop (pip, npm, go build)


def test_three_runtimes_process_100_of_100_jobs_through_cache_internal(shop: Shop) -> None:
    address = shop.address("cache")
    assert address.startswith("127.77.")
    run_batch(shop, shop.sink, Batch(1, 100), what="100 jobs")

    pids = shop.wait_running(*WORKERS)
    # Each worker resolved the name to its project's Redis in its own mount namespace ...
    assert {name: getent(pid, "cache.internal") for name, pid in pids.items()} == dict.fromkeys(WORKERS, address)
    # ... and holds its connections to that address (the kernel's view, by ss), none to another Redis.
    connected = connected_pids(address, 6379)
    assert all(family(pid) & connected for pid in pids.values()), (pids, connected)
    print(f"connections to {address}:6379 from {sorted(connected)}; workers {pids}")
    # Nothing told them the address: Celery's URL is the reference's expansion, BullMQ's host is its default.
    assert environ(pids["orders"])["REDIS_URL"] == "redis://cache.internal:6379/0"
    assert "REDIS_HOST" not in environ(pids["email"])
    assert "env('REDIS_HOST', 'cache.internal')" in (shop.root / "email" / "worker.js").read_text()
    assert shop.redis().get("go:resolved") == address  # the IP Go's own resolver gave it for cache.internal


def test_the_go_worker_was_built_without_cgo(shop: Shop) -> None:
    tree, _ = shop.release_dir("counter")
    info = subprocess.run(["go", "version", "-m", str(tree / ".stackblaze" / "bin" / "counter")],
                          capture_output=True, text=True, check=True).stdout
    assert "\tCGO_ENABLED=0" in info, info


def test_servers_listen_on_their_own_address_only(shop: Shop) -> None:
    for service, port in (("cache", 6379), ("db", 5432)):
        address, pid = shop.address(service), shop.pid(service)
        assert pid is not None
        found = listeners(port)
        own = sorted({local for local, holder in found if holder in family(pid)})
        print(f"ss -ltnp: {service} (pid {pid}) listens on {own}; every listener on {port}: {found}")
        assert own == [address]
        assert not [local for local, _ in found if local in ("0.0.0.0", "*", "[::]", "127.0.0.1", "[::1]")]


def test_the_host_neither_changed_nor_resolves_the_names(shop: Shop) -> None:
    assert etc_hosts_digest() == shop.hosts_before
    assert getent(None, "cache.internal") is None
    done = subprocess.run(["getent", "hosts", "cache.internal"], capture_output=True, text=True)
    assert done.returncode != 0 and not done.stdout
    print(f"/etc/hosts sha256 {shop.hosts_before[:16]}... unchanged; getent hosts cache.internal on the host: "
          f"exit {done.returncode}")
