"""Is a backing service ready: Redis answers PING with +PONG over TCP (after AUTH when it has a password);
PostgreSQL's pg_isready says it accepts connections."""

from __future__ import annotations

import shutil
import socket
import subprocess

from stackblaze.engine.backing import postgres, redis


def redis_ready(address: str, password: str | None, *, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, redis.PORT), timeout=timeout) as conn:
            if password is not None:
                conn.sendall(_command("AUTH", password))
                if not _line(conn).startswith(b"+OK"):
                    return False
            conn.sendall(_command("PING"))
            return _line(conn).startswith(b"+PONG")
    except OSError:
        return False


def postgres_ready(address: str, *, timeout: float = 1.0) -> bool:
    binary = shutil.which("pg_isready")
    if binary is None:  # postgresql-client missing: a TCP connect is the next best sign
        try:
            socket.create_connection((address, postgres.PORT), timeout=timeout).close()
            return True
        except OSError:
            return False
    done = subprocess.run([binary, "-h", address, "-p", str(postgres.PORT), "-t", str(max(1, round(timeout)))],
                          capture_output=True, timeout=timeout + 5, check=False)
    return done.returncode == 0


def ready(kind: str, address: str, password: str | None) -> bool:
    return redis_ready(address, password) if kind == "redis" else postgres_ready(address)


def _command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") and len(data) < 1024:
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data
