"""In-memory stand-ins for tests (ours and users'): a receiver that can be told to fail, and a cursor store.

They implement the behaviour, not canned answers: MemorySink decodes what it is given with the real
encoders' inverse (one record per CRI line) and acknowledges only while it is up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stackblaze.logs.drains.cursor import Chunk
from stackblaze.logs.drains.sink import DeliveryError


@dataclass
class MemorySink:
    """Receives whole lines; `failing` set to an error message makes every delivery fail with it."""

    max_batch_bytes: int = 1 << 20
    failing: str | None = None
    lines: list[tuple[str, int, str]] = field(default_factory=list)  # (service, replica, text)
    attempts: int = 0
    failed_lines: int = 0  # the lines of the deliveries that failed, each failed attempt counted
    closed: int = 0

    def encode(self, chunks: Sequence[Chunk]) -> bytes:
        out = []
        for chunk in chunks:
            for raw in chunk.data.split(b"\n")[: chunk.lines]:
                parts = raw.split(b" ", 3)
                out.append(b"%s %d %s" % (chunk.service.encode(), chunk.replica, parts[3] if len(parts) == 4 else b""))
        return b"\n".join(out)

    async def deliver(self, payload: bytes, *, lines: int) -> None:
        self.attempts += 1
        if self.failing is not None:
            self.failed_lines += lines
            raise DeliveryError(self.failing)
        received = [item.split(b" ", 2) for item in payload.split(b"\n")] if payload else []
        assert len(received) == lines, f"payload has {len(received)} lines, said {lines}"
        self.lines.extend((s.decode(), int(r), t.decode()) for s, r, t in received)

    async def close(self) -> None:
        self.closed += 1

    def texts(self) -> list[str]:
        return [text for _, _, text in self.lines]


@dataclass
class MemoryCursorStore:
    positions: dict[int, dict[tuple[str, int], tuple[int, int]]] = field(default_factory=dict)
    counters: dict[int, dict[str, int]] = field(default_factory=dict)
    errors: dict[int, str | None] = field(default_factory=dict)

    def load_positions(self, drain_id: int) -> dict[tuple[str, int], tuple[int, int]]:
        return dict(self.positions.get(drain_id, {}))

    def save_progress(self, drain_id: int, *, positions: Mapping[tuple[str, int], tuple[int, int]], sent: int,
                      retried: int, dropped: int) -> None:
        self.positions.setdefault(drain_id, {}).update(positions)
        counts = self.counters.setdefault(drain_id, {"sent": 0, "retried": 0, "dropped": 0})
        counts["sent"] += sent
        counts["retried"] += retried
        counts["dropped"] += dropped

    def save_health(self, drain_id: int, *, error: str | None) -> None:
        self.errors[drain_id] = error
