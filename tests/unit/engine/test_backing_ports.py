"""Who holds a port, read from the real /proc: a socket this test listens on is found with this pid."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from stackblaze.engine.backing.ports import conflict, listeners, listening_on


def test_a_listener_on_every_address_conflicts_with_any_loopback_address_and_names_its_pid() -> None:
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen(1)
        port = held.getsockname()[1]
        found = [item for item in listeners(port) if item.pid == os.getpid()]
        assert [(item.address, item.port) for item in found] == [("0.0.0.0", port)]
        clash = conflict("127.77.0.9", port)
        # The holder is named as the kernel names it: "python3", or "pytest" under the pytest entry point.
        name = Path("/proc/self/comm").read_text().strip()
        assert clash is not None and clash.pid == os.getpid() and clash.holder() == f"pid {os.getpid()} ({name})"
    assert conflict("127.77.0.9", port) is None


def test_a_listener_on_another_loopback_address_does_not_conflict() -> None:
    with socket.socket() as held:
        held.bind(("127.77.250.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        assert conflict("127.77.250.2", port) is None
        assert conflict("127.77.250.1", port) is not None
        assert listening_on("127.77.250.1") and not listening_on("127.77.250.2")
