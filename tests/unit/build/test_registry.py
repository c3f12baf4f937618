"""The pure parts of pushing: what a push keeps of the build's options, the repository a digest pins, and
the advice a failed push gives (the pushes themselves: tests/integration/test_registry_push.py); and whether a
registry still holds a digest, asked of a real HTTP server on loopback that answers as a registry's API would."""

from __future__ import annotations

import socket

import pytest

from stackblaze.build.registry import (
    MANIFEST_TYPES,
    check_registry,
    diagnose,
    last_words,
    registry_holds,
    repository_of,
    store_options,
)
from stackblaze.errors import UserError
from tests.unit.build.conftest import KEPT, LOCKED, LOST


def test_a_push_looks_in_the_build_s_store_without_the_build_s_options() -> None:
    args = ["--storage-driver", "vfs", "--root=/tmp/s", "--runroot", "/tmp/r", "--isolation", "chroot", "--layers"]
    assert store_options(args) == ["--storage-driver", "vfs", "--root=/tmp/s", "--runroot", "/tmp/r"]


@pytest.mark.parametrize(("reference", "repository"), [
    ("127.0.0.1:5000/acme/shop-worker:r3", "127.0.0.1:5000/acme/shop-worker"),
    ("127.0.0.1:5000/acme/shop-worker", "127.0.0.1:5000/acme/shop-worker"),  # the port's colon is no tag
    ("registry.example.com/shop:latest", "registry.example.com/shop"),
])
def test_the_digest_reference_names_the_repository_without_its_tag(reference: str, repository: str) -> None:
    assert repository_of(reference) == repository


def test_a_registry_address_has_no_scheme_or_tag() -> None:
    assert check_registry("127.0.0.1:5000/acme/") == "127.0.0.1:5000/acme"
    with pytest.raises(UserError, match=r"--push: 'https://r.example.com' is not a registry address.*"
                                        r"e\.g\. --push 127\.0\.0\.1:5000/acme"):
        check_registry("https://r.example.com")


@pytest.mark.parametrize(("line", "advice"), [
    ('Get "https://h:1/v2/": http: server gave HTTP response to HTTPS client', "push with --insecure-registry"),
    ("dial tcp 127.0.0.1:1: connect: connection refused", "start the registry"),
    ("tls: failed to verify certificate: x509: certificate signed by unknown authority", "add its CA"),
    ("unauthorized: authentication required", "log in first"),
    ("something else entirely", "is the registry up"),
])
def test_a_failed_push_says_what_to_do(line: str, advice: str) -> None:
    assert advice in diagnose(["Getting image source signatures", f"Error: {line}"])


def test_a_long_last_line_keeps_its_cause() -> None:
    line = "Error: pushing image " + "x" * 400 + ": connect: connection refused"
    assert last_words(["", line, "  "]).endswith("connect: connection refused")
    assert len(last_words([line])) == 203


def test_a_registry_says_whether_it_still_holds_a_digest(registry_api: tuple[str, list[tuple[str, str]]]) -> None:
    address, asked = registry_api
    assert registry_holds(f"{address}/acme/q@{KEPT}", insecure=True) is True
    assert registry_holds(f"{address}/acme/q@{LOST}", insecure=True) is False
    assert registry_holds(f"{address}/acme/q@{LOCKED}", insecure=True) is None  # credentials: cannot tell
    assert asked[0] == (f"/v2/acme/q/manifests/{KEPT}", MANIFEST_TYPES)


def test_a_registry_that_does_not_answer_cannot_tell() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert registry_holds(f"127.0.0.1:{port}/acme/q@{KEPT}", insecure=True, timeout=2.0) is None
    assert registry_holds("127.0.0.1:5000/acme/q:latest") is None  # no digest to ask for
