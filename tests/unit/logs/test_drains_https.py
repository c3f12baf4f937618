"""HTTPS drains: gzip NDJSON batches of log records with Basic auth from the URL; only a 2xx acknowledges."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import httpx
import pytest

from stackblaze.logs.drains.cursor import Chunk
from stackblaze.logs.drains.https import HttpsSink
from stackblaze.logs.drains.sink import DeliveryError
from stackblaze.logs.drains.url import parse_url

LINES = [
    b"2026-11-30T13:52:46.000001Z stdout F plain \"quoted\" \\ tab\t and h\xc3\xa9",
    b'2026-11-30T13:52:46.000002Z stderr F {"level": "error", "msg": "boom", "job": 7}',
    b"2026-11-30T13:52:46.000003Z stdout P first piece",
    b"2026-11-30T13:52:46.000004Z stdout F bad utf8 \xff",
]


def chunk() -> Chunk:
    data = b"".join(line + b"\n" for line in LINES)
    return Chunk("worker", 3, 77, 1000, data, len(LINES))


def run(sink: HttpsSink, payload: bytes, lines: int) -> None:
    async def go() -> None:
        try:
            await sink.deliver(payload, lines=lines)
        finally:
            await sink.close()
    asyncio.run(go())


def test_posts_gzip_ndjson_records_with_basic_auth_and_stable_line_ids() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)
    url = parse_url("https://drain:s3cret@logs.example.com/in?source=stackblaze")
    sink = HttpsSink(url, project="acme", transport=httpx.MockTransport(handler))
    payload = sink.encode([chunk()])
    run(sink, payload, len(LINES))
    (request,) = seen
    assert str(request.url) == "https://logs.example.com/in?source=stackblaze"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"drain:s3cret").decode()
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.headers["x-stackblaze-lines"] == "4"
    records: list[dict[str, Any]] = [json.loads(line) for line in gzip.decompress(request.content).splitlines()]
    assert [r["line"] for r in records] == [
        'plain "quoted" \\ tab\t and hé', '{"level": "error", "msg": "boom", "job": 7}', "first piece",
        "bad utf8 \ufffd"]
    assert records[0] == {"project": "acme", "service": "worker", "replica": 3, "at": "2026-11-30T13:52:46.000001Z",
                          "stream": "stdout", "partial": False, "line": records[0]["line"], "id": "worker.3:77:1000"}
    assert (records[1]["level"], records[1]["message"], records[1]["fields"]) == ("error", "boom", {"job": 7})
    assert records[2]["partial"] is True
    offsets = [int(r["id"].rsplit(":", 1)[1]) for r in records]
    assert offsets == [1000 + sum(len(line) + 1 for line in LINES[:i]) for i in range(4)]


@pytest.mark.parametrize("status", [503, 401, 302])
def test_anything_but_2xx_is_a_failure_naming_the_masked_url(status: int) -> None:
    sink = HttpsSink(parse_url("https://u:topsecret@127.0.0.1:9/x?api_key=k123"), project="p",
                     transport=httpx.MockTransport(lambda request: httpx.Response(status)))
    with pytest.raises(DeliveryError) as failure:
        run(sink, sink.encode([chunk()]), 4)
    assert f"HTTP {status}" in str(failure.value)
    assert "topsecret" not in str(failure.value) and "k123" not in str(failure.value)
    assert "https://u:••••••@127.0.0.1:9/x?api_key=••••••" in str(failure.value)


def test_a_refused_connection_is_a_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
    sink = HttpsSink(parse_url("https://127.0.0.1:9/"), project="p", transport=httpx.MockTransport(refuse))
    with pytest.raises(DeliveryError, match="Connection refused"):
        run(sink, sink.encode([chunk()]), 4)
