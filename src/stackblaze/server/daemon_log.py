"""The daemon's own log file: a full disk loses lines (counted, and said once writing works again), never
the daemon, and never prints a "Logging error" traceback onto the same full disk."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path


class DaemonLogHandler(logging.FileHandler):
    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.lost = 0  # records not written since the last one that was

    def emit(self, record: logging.LogRecord) -> None:
        lost = self.lost
        try:
            super().emit(record)  # a failed write ends in handleError; a failed reopen raises here
        except OSError:
            self.handleError(record)
        if lost and self.lost == lost:  # written: the disk has room again
            self.lost = 0
            super().emit(logging.makeLogRecord({
                "name": "stackblaze.daemon", "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": "%d log records before this one were lost (write failed: disk full?)", "args": (lost,),
            }))

    def handleError(self, record: logging.LogRecord) -> None:
        self.lost += 1
        # Whatever the failed write left in the buffer goes with the stream: the next record reopens the
        # file and starts clean instead of retrying a buffer that grows with every failure.
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def install(path: Path) -> DaemonLogHandler:
    handler = DaemonLogHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler
