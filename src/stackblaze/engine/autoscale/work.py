"""What one poll of a service's queues found: the work (ready + due + in flight), per queue, with the warnings
of that very read; and the error of a broker that could not be read at all."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from stackblaze.errors import UnavailableError


@dataclass(frozen=True)
class QueueWork:
    """One queue's counts; `oldest_age` (seconds) is None where the library keeps no enqueue time."""

    name: str
    ready: int = 0
    due: int = 0
    in_flight: int = 0
    oldest_age: float | None = None

    @property
    def total(self) -> int:
        return self.ready + self.due + self.in_flight

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "ready": self.ready, "due": self.due, "in_flight": self.in_flight,
                "oldest_age": self.oldest_age}


@dataclass(frozen=True)
class Work:
    """The work over a service's queues at one poll.

    ready: runnable now (priority lists and BullMQ's prioritized zset included, a paused queue excluded);
    due: delayed or scheduled jobs whose time has come but which no worker has moved yet (at 0 replicas nobody
    will); in_flight: delivered to a worker and not yet acknowledged. `in_flight` may be more than the sum over
    `queues`: Celery's `unacked` hash is one per Redis database, not per queue. `warnings` say what this read
    could not count (a missing queue, a key of the wrong type, a paused queue): a count of 0 with a warning
    is not the same as an idle queue."""

    ready: int
    due: int
    in_flight: int
    oldest_age: float | None
    queues: tuple[QueueWork, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.ready + self.due + self.in_flight

    @classmethod
    def of(cls, queues: Iterable[QueueWork], warnings: Iterable[str] = (), *, shared_in_flight: int = 0) -> Work:
        """The sum over `queues`, plus in-flight work the broker does not attribute to one queue."""
        rows = tuple(queues)
        ages = [q.oldest_age for q in rows if q.oldest_age is not None]
        return cls(ready=sum(q.ready for q in rows), due=sum(q.due for q in rows),
                   in_flight=sum(q.in_flight for q in rows) + shared_in_flight,
                   oldest_age=max(ages) if ages else None, queues=rows,
                   warnings=tuple(dict.fromkeys(warnings)))  # one key may fail two ops: say it once

    def to_dict(self) -> dict[str, object]:
        return {"work": self.total, "ready": self.ready, "due": self.due, "in_flight": self.in_flight,
                "oldest_age": self.oldest_age, "queues": [q.to_dict() for q in self.queues],
                "warnings": list(self.warnings)}


class ReadError(UnavailableError):
    """The broker could not be read (refused, login failed, timed out): the caller holds the count and retries
    at the next poll. The message is one line naming the broker URL without its password."""

    @classmethod
    def reading(cls, url: str, reason: object) -> ReadError:
        text = " ".join(str(reason).split()) or type(reason).__name__
        password = urlsplit(url).password if "://" in url else None
        if password:
            text = text.replace(password, "***")
        return cls(f"cannot read {redact(url)}: {text}")


def redact(url: str) -> str:
    """`url` with its password (if any) shown as ***: what every message and log line may carry."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed port: show no credentials at all rather than guess
        return url.split("@", 1)[-1] if "@" in url else url
    if not password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))
