"""A real image registry for tests: Debian's `docker-registry` (distribution 2.x) serving plain HTTP on a free
127.0.0.1 port, its storage in the test's folder, stopped by PID; and what its HTTP API says about an image.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.tools import need

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))


@dataclass(frozen=True)
class Registry:
    """A running registry: `address` is what a push names (`127.0.0.1:PORT`), `log` its own output."""

    address: str
    log: Path

    def get(self, path: str, *, accept: str | None = None) -> tuple[dict[str, str], Any]:
        """The headers and the JSON body of GET `path` (e.g. /v2/acme/shop/tags/list)."""
        request = urllib.request.Request(f"http://{self.address}{path}", headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(answer.headers.items()), json.loads(answer.read() or b"null")

    def manifest(self, name: str, reference: str) -> tuple[str, dict[str, Any]]:
        """(Docker-Content-Digest, the manifest) of `name` at a tag or digest, as a pull would ask for it."""
        headers, body = self.get(f"/v2/{name}/manifests/{reference}", accept=MANIFEST_TYPES)
        return headers["Docker-Content-Digest"], body

    def delete_manifest(self, name: str, digest: str) -> None:
        """What a registry's clean-up does to an image (the config enables `storage.delete`)."""
        request = urllib.request.Request(f"http://{self.address}/v2/{name}/manifests/{digest}", method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 202, answer.status

    def tags(self, name: str) -> list[str]:
        return list(self.get(f"/v2/{name}/tags/list")[1]["tags"] or [])

    def answers(self) -> bool:
        try:
            return bool(self.get("/v2/")[1] == {})
        except (OSError, urllib.error.URLError, ValueError):  # not listening yet
            return False


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def running_registry(folder: Path, *, timeout: float = 20.0) -> Iterator[Registry]:
    """`docker-registry serve` with its config, storage and log in `folder`, until `GET /v2/` answers."""
    binary = need("docker-registry")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "config.yml"
    config.write_text(f"""\
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {folder / "storage"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    registry = Registry(f"127.0.0.1:{port}", folder / "registry.log")
    with registry.log.open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not registry.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"docker-registry on {registry.address} did not answer GET /v2/ within "
                                     f"{timeout}s (exit {process.poll()}): {registry.log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
