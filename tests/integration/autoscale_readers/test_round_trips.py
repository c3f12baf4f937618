"""One poll is one round trip: Redis's MONITOR sees a single EVALSHA per read of a kind's queues, whatever the
number of queues (the keys are read inside the script)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.integration.autoscale_readers.brokers import polling

READS = 5


@pytest.mark.parametrize("kind", ["celery", "rq", "bullmq", "dramatiq", "redis-list"])
def test_each_read_is_one_command_from_the_reader(kind: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with polling(kind, redis_url, "first", "second", "third") as poller:
        poller.read()  # the first read also loads the script
        with client.monitor() as monitor:
            for _ in range(READS):
                poller.read()
            client2 = redis.Redis.from_url(redis_url)
            client2.echo("end of the reads")
            seen: list[dict[str, Any]] = []
            for entry in monitor.listen():
                if entry["command"] == "ECHO end of the reads":
                    break
                seen.append(entry)
            client2.close()
    from_clients = [e["command"].split()[0] for e in seen if e.get("client_type") != "lua"]
    assert from_clients == ["EVALSHA"] * READS
    assert any(e.get("client_type") == "lua" for e in seen)  # the reads themselves ran inside the script
