"""Work (the sum the autoscaler sizes by), ReadError's message and open_reader's choice of reader: no broker
needed (tests/integration/autoscale_readers reads real ones)."""

from __future__ import annotations

import asyncio

import pytest

from stackblaze.engine.autoscale.http_readers import NatsReader, RabbitMQReader
from stackblaze.engine.autoscale.readers import open_reader
from stackblaze.engine.autoscale.redis_readers import BullMQReader, CeleryReader, RQReader
from stackblaze.engine.autoscale.work import QueueWork, ReadError, Work, redact
from stackblaze.errors import UnavailableError
from stackblaze.spec.autoscale import Queues


def test_work_is_ready_plus_due_plus_in_flight_over_the_queues() -> None:
    work = Work.of([QueueWork("a", ready=3, due=1, in_flight=2, oldest_age=4.0),
                    QueueWork("b", ready=1, oldest_age=9.5), QueueWork("c")],
                   ["x", "y", "x"], shared_in_flight=5)
    assert (work.ready, work.due, work.in_flight, work.total) == (4, 1, 7, 12)
    assert work.oldest_age == 9.5  # the oldest job of any queue
    assert work.warnings == ("x", "y")  # a key that failed two ops is said once
    assert work.to_dict()["work"] == 12 and [q["name"] for q in work.to_dict()["queues"]] == ["a", "b", "c"]


def test_no_age_anywhere_is_none_not_zero() -> None:
    assert Work.of([QueueWork("a", ready=2)]).oldest_age is None


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
    ("http://guest:guest@mq:15672/%2F", "http://guest:***@mq:15672/%2F"),
    ("redis://cache:6379/0", "redis://cache:6379/0"),
    ("http://user@nats:8222", "http://user@nats:8222"),
])
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_a_read_error_is_one_line_without_the_password_even_when_the_library_says_it() -> None:
    error = ReadError.reading("http://guest:p4ss@mq:15672/%2F", "login\nfailed for guest:p4ss")
    assert str(error) == "cannot read http://guest:***@mq:15672/%2F: login failed for guest:***"
    assert isinstance(error, UnavailableError)  # the API and CLI treat it as "retry later"


@pytest.mark.parametrize(("kind", "url", "reader"), [
    ("celery", "redis://cache:6379/0", CeleryReader), ("rq", "redis://cache:6379/0", RQReader),
    ("bullmq", "redis://cache:6379", BullMQReader), ("rabbitmq", "http://g:g@mq:15672/%2F", RabbitMQReader),
    ("nats", "http://nats:8222", NatsReader),
])
def test_open_reader_picks_the_kinds_reader_without_connecting(kind: str, url: str, reader: type) -> None:
    # cache, mq and nats resolve nowhere: opening must not connect (a broker that is down fails the read).
    opened = open_reader(Queues(kind, url, ("S/C",) if kind == "nats" else ("q",)))  # type: ignore[arg-type]
    assert isinstance(opened, reader)
    asyncio.run(opened.close())


def test_an_unexpanded_reference_is_refused() -> None:
    with pytest.raises(ValueError, match=r"still holds a reference"):
        open_reader(Queues("rq", "${{cache.REDIS_URL}}", ("q",)))
