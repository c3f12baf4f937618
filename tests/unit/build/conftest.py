"""A registry's API as far as a HEAD of a manifest goes: a real HTTP server on loopback (test_registry.py,
test_queue_metrics_image.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

KEPT, LOST, LOCKED = ("sha256:" + c * 64 for c in "abc")


@pytest.fixture
def registry_api() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A loopback HTTP server answering HEAD /v2/acme/q/manifests/<digest> with 200 (KEPT), 401 (LOCKED) or
    404; its address and the (path, Accept) it was asked."""
    asked: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            asked.append((self.path, self.headers.get("Accept", "")))
            digest = self.path.rsplit("/", 1)[-1]
            self.send_response(200 if digest == KEPT else 401 if digest == LOCKED else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
