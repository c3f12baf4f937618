"""A plain Redis list (its length only, and a warning that work in flight is invisible), and a Redis broker that
stops or refuses the password: a ReadError whose message names the URL without the password."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from stackblaze.engine.autoscale.work import ReadError
from tests.integration.autoscale_readers.brokers import polling, redis_server


def test_a_plain_list_counts_its_length_and_says_in_flight_is_invisible(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.rpush("jobs", "a", "b", "c")
    client.set("broken", "not a list")

    with polling("redis-list", redis_url, "jobs", "jbos", "broken") as poller:
        work = poller.read()
        assert (work.ready, work.due, work.in_flight) == (3, 0, 0)
        assert any("jobs a worker has popped are invisible" in w for w in work.warnings)
        assert any("redis-list queue 'jbos' not found" in w for w in work.warnings)
        assert any("key 'broken'" in w and "is a string" in w for w in work.warnings)

        client.delete("jobs")  # emptied by its consumers: a list this reader has seen is not "not found"
        assert not any("'jobs'" in w for w in poller.read().warnings)


@pytest.mark.parametrize("kind", ["celery", "rq", "bullmq", "dramatiq", "redis-list"])
def test_a_stopped_redis_is_a_read_error_without_the_password(kind: str, tmp_path: Path) -> None:
    password = "hunter2-s3cret"
    with redis_server(tmp_path / "redis", password) as server, polling(kind, server.url, "jobs") as poller:
        poller.read()
        server.proc.terminate()
        server.proc.wait(timeout=10)
        with pytest.raises(ReadError) as stopped:
            poller.read()
    message = str(stopped.value)
    assert message.startswith(f"cannot read redis://:***@127.0.0.1:{server.port}/0: ")
    assert password not in message and "\n" not in message
    assert "refused" in message.lower() or "connect" in message.lower(), message


def test_a_wrong_redis_password_is_a_read_error_without_it(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", "right-pw") as server, \
            polling("rq", f"redis://:wrong-pw@127.0.0.1:{server.port}/0", "jobs") as poller, \
            pytest.raises(ReadError) as refused:
        poller.read()
    assert "wrong-pw" not in str(refused.value) and "right-pw" not in str(refused.value)
    assert str(refused.value).startswith(f"cannot read redis://:***@127.0.0.1:{server.port}/0: ")
