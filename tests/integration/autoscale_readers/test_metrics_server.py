"""The queue-metrics server KEDA's metrics-api trigger reads on a cluster, run here as the Deployment runs it
(`python -m stackblaze.engine.autoscale.metrics_server`, its config a JSON file named by the env) against a real
redis-server: the work it serves is what the readers count, an unknown service is a 404, a stopped broker a 503
without the password (KEDA counts that as a failed read), and a bad config one line before it serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from stackblaze.engine.autoscale.metrics_server import CONFIG_ENV
from tests.integration.autoscale_readers.brokers import redis_server, stop
from tests.integration.conftest import free_port, wait_for

MODULE = "stackblaze.engine.autoscale.metrics_server"


def start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The server as its Deployment runs it, its output (stdout and stderr) in `log`."""
    env = {**os.environ, CONFIG_ENV: str(config), "STACKBLAZE_QUEUE_METRICS_HOST": "127.0.0.1",
           "STACKBLAZE_QUEUE_METRICS_PORT": str(port)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", MODULE], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, redis.Redis, subprocess.Popen[bytes], str]]:
    """(the server's base URL, a client of its redis, the redis-server process, the password)."""
    password = "q-metrics-s3cret"
    with redis_server(tmp_path / "redis", password) as server:
        config = tmp_path / "queues.json"
        config.write_text(json.dumps({"services": {
            "orders": {"kind": "redis-list", "url": server.url, "names": ["jobs", "jobs-high"]},
            "mails": {"kind": "rq", "url": server.url, "names": ["default"]}}}), encoding="utf-8")
        port = free_port()
        log = tmp_path / "queue-metrics.log"
        proc = start(config, port, log)
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, log.read_text()
                return False
        try:
            wait_for("the queue-metrics server to answer", healthy, timeout=20, interval=0.1)
            yield base, redis.Redis(port=server.port, password=password), server.proc, password
        finally:
            stop(proc)


def test_it_serves_each_services_work_as_the_readers_count_it(
        served: tuple[str, redis.Redis, subprocess.Popen[bytes], str]) -> None:
    base, client, _, _ = served
    client.rpush("jobs", *range(7))
    client.rpush("jobs-high", "x", "y")
    answer = httpx.get(f"{base}/metrics/orders", timeout=5)
    assert answer.status_code == 200
    body = answer.json()
    # `work` is KEDA's valueLocation; ready + due + in_flight beside it for people reading it
    assert (body["work"], body["ready"], body["due"], body["in_flight"]) == (9, 9, 0, 0)
    assert [q["name"] for q in body["queues"]] == ["jobs", "jobs-high"]
    client.delete("jobs")
    assert httpx.get(f"{base}/metrics/orders", timeout=5).json()["work"] == 2
    assert httpx.get(f"{base}/metrics/mails", timeout=5).json()["work"] == 0
    missing = httpx.get(f"{base}/metrics/nope", timeout=5)
    assert missing.status_code == 404 and "mails, orders" in missing.json()["error"]


def test_a_stopped_broker_is_a_503_without_the_password(
        served: tuple[str, redis.Redis, subprocess.Popen[bytes], str]) -> None:
    base, _, broker, password = served
    assert httpx.get(f"{base}/metrics/orders", timeout=5).status_code == 200
    broker.terminate()
    broker.wait(timeout=10)
    answer = httpx.get(f"{base}/metrics/orders", timeout=10)
    assert answer.status_code == 503
    assert answer.json()["error"].startswith("cannot read redis://:***@127.0.0.1:")
    assert password not in answer.text


def test_a_bad_config_is_one_line_and_no_server(tmp_path: Path) -> None:
    config = tmp_path / "queues.json"
    config.write_text(json.dumps({"services": {"orders": {"kind": "sidekiq", "url": "redis://x", "names": ["a"]}}}),
                      encoding="utf-8")
    proc = start(config, free_port(), tmp_path / "out.log")
    try:
        proc.wait(timeout=30)
    finally:
        stop(proc)
    lines = (tmp_path / "out.log").read_text().strip().splitlines()
    assert proc.returncode == 1
    assert lines == [f"{config}: services.orders: not {{kind, url, names}} with kind one of celery, rq, bullmq, "
                     "dramatiq, rabbitmq, nats, redis-list"]
