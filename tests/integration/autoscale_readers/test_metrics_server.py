"""The queue-metrics server KEDA's metrics-api triggers read on a cluster, run here as the Deployment runs it
(`python -m stackblaze.engine.autoscale.metrics_server`, its config a JSON file named by the env) against a real
redis-server: the work it serves is the poll's mean of what the readers count (a poll of 0.5 s here, the config's
per-service `poll`), `waiting` the latest read's at once, an unknown service is a 404, a stopped broker a 503
without the password (KEDA counts that as a failed read), and a bad config one line before it serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq import Queue

from stackblaze.engine.autoscale.metrics_server import CONFIG_ENV, POLL_ENV
from tests.integration.autoscale_readers.brokers import redis_server, stop
from tests.integration.conftest import free_port, wait_for

MODULE = "stackblaze.engine.autoscale.metrics_server"
POLL = 0.5  # orders' poll (the config's); mails has none: STACKBLAZE_QUEUE_METRICS_POLL's 2 s
SLO = 2.0  # reports' latency_slo


def start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The server as its Deployment runs it, its output (stdout and stderr) in `log`."""
    env = {**os.environ, CONFIG_ENV: str(config), "STACKBLAZE_QUEUE_METRICS_HOST": "127.0.0.1",
           "STACKBLAZE_QUEUE_METRICS_PORT": str(port), POLL_ENV: "2"}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", MODULE], env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, redis.Redis, subprocess.Popen[bytes], str]]:
    """(the server's base URL, a client of its redis, the redis-server process, the password)."""
    password = "q-metrics-s3cret"
    with redis_server(tmp_path / "redis", password) as server:
        config = tmp_path / "queues.json"
        config.write_text(json.dumps({"services": {
            "orders": {"kind": "redis-list", "url": server.url, "names": ["jobs", "jobs-high"], "poll": POLL},
            "mails": {"kind": "rq", "url": server.url, "names": ["default"]},
            "reports": {"kind": "rq", "url": server.url, "names": ["reports"], "poll": POLL,
                        "latency_slo": SLO, "tolerance": 0.1}}}), encoding="utf-8")
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


def metrics(base: str, service: str) -> dict[str, Any]:
    answer = httpx.get(f"{base}/metrics/{service}", timeout=5)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_it_serves_each_services_work_as_the_readers_count_it(
        served: tuple[str, redis.Redis, subprocess.Popen[bytes], str]) -> None:
    base, client, _, _ = served
    client.rpush("jobs", *range(7))
    client.rpush("jobs-high", "x", "y")
    # `waiting` is the latest read (within one read interval, 0.05 s): what wakes a worker from 0
    wait_for("the latest read to see the jobs", lambda: metrics(base, "orders")["waiting"] == 9, timeout=5)
    # `work` (KEDA's valueLocation) is the mean of a whole poll's reads: 9 once a poll has read only 9
    body = wait_for("a poll's mean of 9", lambda: (b := metrics(base, "orders"))["work"] == 9 and b, timeout=10)
    assert (body["work"], body["ready"], body["due"], body["in_flight"], body["samples"]) == (9, 9, 0, 0, 10)
    assert body["poll"] == POLL and [q["name"] for q in body["latest"]["queues"]] == ["jobs", "jobs-high"]
    client.delete("jobs")
    wait_for("the latest read to see 2", lambda: metrics(base, "orders")["waiting"] == 2, timeout=5)
    wait_for("a poll's mean of 2", lambda: metrics(base, "orders")["work"] == 2, timeout=10)
    mails = metrics(base, "mails")
    assert (mails["work"], mails["poll"]) == (0, 2.0)  # no poll in its config: the env's
    missing = httpx.get(f"{base}/metrics/nope", timeout=5)
    assert missing.status_code == 404 and "mails, orders" in missing.json()["error"]


def test_the_mean_lags_a_burst_by_a_poll_while_waiting_shows_it_at_once(
        served: tuple[str, redis.Redis, subprocess.Popen[bytes], str]) -> None:
    """Under a steady load one read's noise must not size the count (sampling.py): the served work is a whole
    poll's mean, so it shows a burst only once a poll of reads has seen it (0.45 s at least, the poll's first to
    last read), while `waiting`, the latest read, shows it at once (what wakes a worker from 0)."""
    base, client, _, _ = served
    wait_for("a complete poll", lambda: metrics(base, "orders")["samples"] == 10, timeout=10)
    pushed = time.monotonic()
    client.rpush("jobs", *range(20))
    seen = []
    while not seen or seen[-1][2] != 20:
        body = metrics(base, "orders")
        seen.append((round(time.monotonic() - pushed, 3), body["waiting"], body["work"]))
        assert seen[-1][0] < 10, seen
        time.sleep(0.02)
    assert any(waiting == 20 and work < 20 for _, waiting, work in seen), seen
    assert seen[-1][0] >= 0.45 - 0.05, seen  # 9 intervals of 0.05 s between a poll's first and last read


def test_the_latency_ratio_follows_the_oldest_jobs_age_against_the_latency_slo(
        served: tuple[str, redis.Redis, subprocess.Popen[bytes], str]) -> None:
    """What KEDA's latency trigger reads (keda.py: metricType Value, target 1): 0 while the oldest job of a real
    RQ queue is younger than half the latency_slo, 1.0 past half (the HPA keeps the count: no shrink), 1.11 past
    the slo (1 + tolerance + 0.01: the HPA adds a replica), each with the age it was served with; a worker without
    a latency_slo serves 0 whatever its jobs' age."""
    base, client, _, _ = served
    assert metrics(base, "reports")["latency"] == 0  # no job, no age
    Queue("reports", connection=client).enqueue("tasks.report")
    Queue("default", connection=client).enqueue("tasks.mail")
    seen: list[tuple[float | None, float]] = []
    began = time.monotonic()
    while not seen or seen[-1][1] != 1.11:
        body = metrics(base, "reports")
        seen.append((body["oldest_age"], body["latency"]))
        assert time.monotonic() - began < 10, seen
        time.sleep(0.05)
    for age, ratio in seen:
        assert ratio == (0 if age is None or age <= SLO / 2 else 1.0 if age <= SLO else 1.11), (age, ratio, seen)
    assert [ratio for _, ratio in seen if ratio == 1.0], seen  # the hold was served on the way
    mails = wait_for("the mail job 3 s old", lambda: ((b := metrics(base, "mails"))["oldest_age"] or 0) > 3 and b,
                     timeout=10)
    assert mails["latency"] == 0


def test_a_stopped_broker_is_a_503_without_the_password(
        served: tuple[str, redis.Redis, subprocess.Popen[bytes], str]) -> None:
    base, _, broker, password = served
    assert httpx.get(f"{base}/metrics/orders", timeout=5).status_code == 200
    broker.terminate()
    broker.wait(timeout=10)
    # the sampler reads every 0.05 s: its next read fails (a refused connect at once, else READ_TIMEOUT's 2.5 s)
    answer = wait_for("a 503", lambda: (a := httpx.get(f"{base}/metrics/orders", timeout=10)).status_code == 503
                      and a, timeout=5)
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
