"""The push listener of NATS JetStream queues: a core NATS subscription to the subjects of each queue's stream,
which sees every publish without consuming it (JetStream keeps the message for the real consumer).

The spec's url is the monitoring port (what the reader polls): /varz gives the client port, /jsz the streams'
subjects. The client is the few lines of the text protocol a subscriber needs (INFO, CONNECT, SUB, MSG,
PING/PONG), so the daemon needs no NATS library. A server that asks for auth or TLS gets no listener: the loop
polls and says why.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from stackblaze.engine.autoscale.wake import NoPush, Push
from stackblaze.engine.autoscale.work import ReadError, redact

# A core subscriber may get a publish before JetStream has stored it (both are subscribers of the subject):
# the loop evaluates at once and once more this much later.
SETTLE = 0.2


class NatsListener:
    def __init__(self, url: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout
        self.streams = tuple(dict.fromkeys(name.partition("/")[0] for name in names))
        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self.host = parts.hostname or "127.0.0.1"
        self.subjects: dict[str, str] = {}  # subject -> its stream
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _get(self, client: httpx.AsyncClient, path: str, params: dict[str, str]) -> Any:
        try:
            answer = await client.get(self.base + path, params=params)
            answer.raise_for_status()
            return answer.json()
        except (httpx.HTTPError, ValueError) as error:
            raise ReadError.reading(self.url, error) from None

    async def subscribe(self) -> list[Push]:
        await self.close()
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            varz = await self._get(client, "/varz", {})
            jsz = await self._get(client, "/jsz", {"streams": "true", "config": "true"})
        where = redact(self.url)
        if varz.get("auth_required") or varz.get("tls_required"):
            raise NoPush(f"nats on {where} asks clients for {'TLS' if varz.get('tls_required') else 'auth'}: "
                         "woken from 0 by the poll (the push listener connects without credentials)")
        self.subjects = {}
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                if stream.get("name") in self.streams:
                    for subject in (stream.get("config") or {}).get("subjects") or []:
                        self.subjects[str(subject)] = str(stream["name"])
        if not self.subjects:  # the reader warns about a missing stream; until it exists, poll
            raise ReadError.reading(self.url, f"no subjects found for streams {', '.join(self.streams)}")
        port = int(varz.get("port") or 4222)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, port), self.timeout)
            self._reader, self._writer = reader, writer
            await asyncio.wait_for(reader.readline(), self.timeout)  # INFO {...}
            lines = [b"CONNECT " + json.dumps({"verbose": False, "pedantic": False, "name": "stackblaze-wake",
                                               "lang": "python", "version": "0"}).encode()]
            lines += [f"SUB {subject} {sid}".encode() for sid, subject in enumerate(self.subjects, 1)]
            writer.write(b"\r\n".join([*lines, b"PING", b""]))
            await writer.drain()
            while (line := await asyncio.wait_for(reader.readline(), self.timeout)).strip() != b"PONG":
                if line.startswith(b"-ERR") or not line:
                    raise ReadError.reading(self.url, line.decode(errors="replace").strip() or "connection closed")
        except (OSError, TimeoutError) as error:
            raise ReadError.reading(f"nats://{self.host}:{port}", error) from None
        return []

    async def next(self) -> Push:
        assert self._reader is not None and self._writer is not None, "subscribe() first"
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    raise ReadError.reading(self.url, "the server closed the connection")
                if line.startswith(b"PING"):
                    self._writer.write(b"PONG\r\n")
                    await self._writer.drain()
                elif line.startswith(b"MSG "):
                    # MSG <subject> <sid> [reply-to] <#bytes>: the payload follows, then CRLF
                    words = line.split()
                    await self._reader.readexactly(int(words[-1]) + 2)
                    subject = words[1].decode(errors="replace")
                    return Push(f"nats publish on {subject!r}", again=SETTLE)
                elif line.startswith(b"-ERR"):
                    raise ReadError.reading(self.url, line.decode(errors="replace").strip())
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            raise ReadError.reading(self.url, error) from None

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
