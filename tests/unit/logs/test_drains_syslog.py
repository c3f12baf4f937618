"""Syslog drains: each line one RFC 5424 message (checked by a parser that is not ours) in an octet-counted
frame; delivery is acknowledged by the receiver's TCP, over plain TCP or verified TLS."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # its parser library (lark 0.6) imports the deprecated sre_parse
    warnings.simplefilter("ignore", DeprecationWarning)
    from syslog_rfc5424_parser import SyslogMessage  # type: ignore[import-untyped]

from stackblaze.logs.drains.cursor import Chunk
from stackblaze.logs.drains.sink import DeliveryError
from stackblaze.logs.drains.syslog import SyslogSink, encode_frames
from stackblaze.logs.drains.url import parse_url
from tests.tls import make_certificate

AT = b"2026-11-30T13:52:46.123456Z"


def chunk(*lines: bytes, service: str = "worker", replica: int = 2) -> Chunk:
    data = b"".join(AT + b" " + line + b"\n" for line in lines)
    return Chunk(service, replica, 1, 0, data, len(lines))


def unframe(data: bytes) -> list[bytes]:
    """RFC 6587 octet counting: `LEN SP MSG`, back to back."""
    messages = []
    while data:
        length, _, rest = data.partition(b" ")
        messages.append(rest[: int(length)])
        data = rest[int(length):]
    return messages


def test_each_line_is_one_valid_rfc5424_message() -> None:
    data = encode_frames([chunk(b"stdout F hello world", b"stderr F oops: it failed",
                                b'stdout F {"level": "warning", "msg": "slow"}', b"stdout P part of a long line",
                                b"stdout F h\xc3\xa9 \xff bytes kept")], hostname="box-1")
    parsed = [SyslogMessage.parse(m.decode("utf-8", "replace")).as_dict() for m in unframe(data)]
    assert [(p["facility"], p["severity"]) for p in parsed] == [
        ("user", "info"), ("user", "err"), ("user", "warning"), ("user", "info"), ("user", "info")]
    assert {(p["version"], p["hostname"], p["appname"], p["procid"], p["msgid"], p["timestamp"]) for p in parsed} == {
        (1, "box-1", "worker", "worker.2", None, AT.decode())}
    assert [p["msg"] for p in parsed[:4]] == [
        "hello world", "oops: it failed", '{"level": "warning", "msg": "slow"}', "part of a long line"]
    assert unframe(data)[4].endswith(b"h\xc3\xa9 \xff bytes kept")  # the line's bytes, as written


class Receiver:
    """A TCP (or TLS) receiver on 127.0.0.1 that keeps what it reads; `stop` closes it and its connections."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, context: ssl.SSLContext | None = None) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=context)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while data := await reader.read(65536):
            self.received.extend(data)
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()

    async def wait_for(self, size: int) -> None:
        for _ in range(500):
            if len(self.received) >= size:
                return
            await asyncio.sleep(0.01)


def test_delivers_over_tcp_and_reconnects_after_the_receiver_comes_back() -> None:
    async def scenario() -> None:
        receiver = Receiver()
        await receiver.start()
        sink = SyslogSink(parse_url(f"syslog://127.0.0.1:{receiver.port}"), hostname="h")
        payload = sink.encode([chunk(*[b"stdout F line %d" % i for i in range(5000)])])
        await sink.deliver(payload, lines=5000)  # returns once the receiver's TCP acknowledged it all
        await receiver.wait_for(len(payload))
        assert bytes(receiver.received) == payload
        await receiver.stop()
        with pytest.raises(DeliveryError, match=f"syslog://127.0.0.1:{receiver.port}"):
            for _ in range(3):  # the old connection may take a write to notice the reset
                await sink.deliver(payload, lines=5000)
        await receiver.start()
        receiver.received.clear()
        await sink.deliver(b"3 abc", lines=1)
        await receiver.wait_for(5)
        await sink.close()
        await receiver.stop()
        assert bytes(receiver.received) == b"3 abc"
    asyncio.run(scenario())


def test_tls_verifies_the_receiver_against_the_given_ca(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def scenario() -> None:
        receiver = Receiver()
        await receiver.start(context)
        port = receiver.port
        trusted = SyslogSink(parse_url(f"syslog+tls://localhost:{port}?ca={cert}"), hostname="h")
        payload = trusted.encode([chunk(b"stdout F secret-free line")])
        await trusted.deliver(payload, lines=1)
        await trusted.close()
        untrusted = SyslogSink(parse_url(f"syslog+tls://localhost:{port}"), hostname="h")
        with pytest.raises(DeliveryError, match="certificate not trusted"):
            await untrusted.deliver(payload, lines=1)
        await receiver.wait_for(len(payload))
        assert bytes(receiver.received) == payload
        await receiver.stop()
    asyncio.run(scenario())
