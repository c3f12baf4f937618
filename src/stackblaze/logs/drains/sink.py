"""What a drain delivers to: encode a batch (CPU only, in a worker thread), then deliver it (async)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Protocol

from stackblaze.logs.drains.cursor import Chunk
from stackblaze.logs.drains.url import DrainURL


class DeliveryError(Exception):
    """The receiver did not acknowledge the batch; the message is one line and carries no credentials."""


class Sink(Protocol):
    max_batch_bytes: int  # of log file bytes per batch

    def encode(self, chunks: Sequence[Chunk]) -> bytes:
        """The bytes to send for these lines. Pure and thread-safe: it runs in a worker thread."""

    async def deliver(self, payload: bytes, *, lines: int) -> None:
        """Returns once the receiver has acknowledged the whole payload; raises DeliveryError."""

    async def close(self) -> None: ...


def local_hostname() -> str:
    """This machine's name as RFC 5424 allows it (PRINTUSASCII, at most 255), '-' when there is none."""
    name = "".join(ch for ch in socket.gethostname() if 33 <= ord(ch) <= 126)[:255]
    return name or "-"


def open_sink(url: DrainURL, *, project: str) -> Sink:
    if url.scheme == "https":
        from stackblaze.logs.drains.https import HttpsSink

        return HttpsSink(url, project=project)
    from stackblaze.logs.drains.syslog import SyslogSink

    return SyslogSink(url, hostname=local_hostname())
