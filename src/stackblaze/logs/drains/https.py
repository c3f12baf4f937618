"""HTTPS drains: POST batches of NDJSON log records, gzip-compressed, as Heroku's HTTPS drains batch.

Each request: `Content-Type: application/x-ndjson`, `Content-Encoding: gzip`, `Authorization: Basic`
from the URL's userinfo (`https://user:token@host/path`), `X-Stackblaze-Lines` (records in the body) and
`X-Stackblaze-Batch` (a digest of the body: a retry of the same batch carries the same one). Each record
is the log record of `stackblaze logs --json` plus `project` and `id` (`<service>.<replica>:<inode>:
<offset>`, the same on every delivery of that line, so a receiver can drop the duplicates that
at-least-once delivery allows). Any 2xx acknowledges the batch; anything else is retried.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import httpx

from stackblaze.logs.drains.cursor import Chunk
from stackblaze.logs.drains.sink import DeliveryError
from stackblaze.logs.drains.url import DrainURL
from stackblaze.logs.record import LogRecord
from stackblaze.logs.structured import record_dict

json_string: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def encode_records(chunks: Sequence[Chunk], *, project: str) -> bytes:
    """The chunks' lines as NDJSON log records (uncompressed)."""
    out: list[bytes] = []
    append = out.append
    project_json = json_string(project)
    for chunk in chunks:
        head = f'{{"project":{project_json},"service":{json_string(chunk.service)},"replica":{chunk.replica},'.encode()
        ident = f"{chunk.service}.{chunk.replica}:{chunk.inode}:".encode()
        offset = chunk.offset
        for raw in chunk.data.split(b"\n")[: chunk.lines]:
            start, offset = offset, offset + len(raw) + 1
            parts = raw.split(b" ", 3)
            if len(parts) < 3:
                continue
            text = (parts[3] if len(parts) == 4 else b"").decode("utf-8", "replace")
            if text[:1] == "{":
                append(_structured(parts, text, chunk, project, ident + b"%d" % start))
                continue
            append(b'%s"at":"%s","stream":"%s","partial":%s,"line":%s,"id":"%s%d"}\n' % (
                head, parts[0], parts[1], b"true" if parts[2] == b"P" else b"false",
                json_string(text).encode(), ident, start))
    return b"".join(out)


def _structured(parts: list[bytes], text: str, chunk: Chunk, project: str, ident: bytes) -> bytes:
    record = LogRecord(at=parts[0].decode("ascii", "replace"), service=chunk.service, replica=chunk.replica,
                       stream=parts[1].decode("ascii", "replace"), line=text, partial=parts[2] == b"P")
    payload = record_dict(record)
    payload.update(project=project, id=ident.decode())
    return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


class HttpsSink:
    max_batch_bytes = 1 << 20

    def __init__(self, url: DrainURL, *, project: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url = url
        self._project = project
        auth = httpx.BasicAuth(url.username or "", url.password or "") if url.username or url.password else None
        self._client = httpx.AsyncClient(
            verify=url.ssl_context(), timeout=TIMEOUT, auth=auth, transport=transport, follow_redirects=False,
            headers={"User-Agent": "stackblaze-drain", "Content-Type": "application/x-ndjson",
                     "Content-Encoding": "gzip"},
        )

    def encode(self, chunks: Sequence[Chunk]) -> bytes:
        return gzip.compress(encode_records(chunks, project=self._project), compresslevel=1, mtime=0)

    async def deliver(self, payload: bytes, *, lines: int) -> None:
        headers = {"X-Stackblaze-Lines": str(lines), "X-Stackblaze-Batch": hashlib.sha1(payload).hexdigest()[:20]}
        try:
            response = await self._client.post(self._url.target, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self._url.masked}: {self._url.scrub(describe(exc))}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"{self._url.masked}: HTTP {response.status_code} {response.reason_phrase}".rstrip())

    async def close(self) -> None:
        await self._client.aclose()


def describe(exc: httpx.HTTPError) -> str:
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:  # the OS or TLS error underneath
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS certificate not trusted ({text}; pass ?ca=/path/to/ca.pem)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return text
