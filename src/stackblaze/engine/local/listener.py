"""The runner's unix socket: JSON lines in (requests), JSON lines out (replies, and events pushed to all).

It shares the runner's selector and thread. Out of file descriptors, it still lets the daemon connect (a
spare descriptor is held for that), and it never spins on a listening socket it cannot accept from.
Standard library only: the runner imports this.
"""

from __future__ import annotations

import json
import os
import selectors
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from stackblaze.engine.local.runnerlog import RunnerLog


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, message: dict[str, Any]) -> bool:
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
            return True
        except OSError:
            return False


class Listener:
    def __init__(self, path: str, selector: selectors.BaseSelector, *, handle: Callable[[bytes], dict[str, Any]],
                 log: RunnerLog) -> None:
        self.path = path
        self.selector = selector
        self.handle = handle  # one request line -> its reply
        self.log = log
        self.clients: dict[int, Client] = {}
        self.listening = False
        self.spare: int | None = None

    def open(self) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        staging = f"{self.path}.{os.getpid()}"
        try:
            self.server.bind(staging)
        finally:
            os.umask(old)
        self.server.listen(16)
        # The socket appears under its name only once it listens (rename replaces a dead runner's): a
        # client never meets a refused connect it could take for "no runner" (and start a second one).
        os.rename(staging, self.path)
        self.server.setblocking(False)
        self.keep_spare()

    def keep_spare(self) -> None:
        """Hold one descriptor in reserve, and listen (again) if we had to stop for lack of descriptors.
        The runner calls it whenever it frees descriptors."""
        if self.spare is None:
            try:
                self.spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return
        if not self.listening:
            self.selector.register(self.server, selectors.EVENT_READ, ("accept", None))
            self.listening = True

    def accept(self) -> None:
        try:
            sock, _ = self.server.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # EMFILE, ENFILE: the spare descriptor makes room for this one client
            if self.spare is None:
                # Out of descriptors twice over: stop listening (or the selector would wake at once, again
                # and again) until descriptors are freed; the client waits in the backlog.
                self.selector.unregister(self.server)
                self.listening = False
                self.log.say(f"cannot accept a client ({exc}); listening again once descriptors are freed")
                return
            os.close(self.spare)
            self.spare = None
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
        sock.setblocking(True)
        sock.settimeout(5.0)
        client = Client(sock)
        self.clients[sock.fileno()] = client
        self.selector.register(sock, selectors.EVENT_READ, ("client", client))

    def drop(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        try:
            self.selector.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()

    def read(self, client: Client) -> None:
        try:
            chunk = client.sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            self.drop(client)
            return
        client.buffer += chunk
        *lines, client.buffer = client.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                reply = self.handle(line)
                if not client.send(reply):
                    self.drop(client)
                    return

    def broadcast(self, message: dict[str, Any]) -> None:
        for client in list(self.clients.values()):
            if not client.send(message):
                self.drop(client)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self.drop(client)
        self.server.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
