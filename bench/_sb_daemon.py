"""Start the stackblaze daemon with a log rotation limit that the spec cannot set (used by compare.py only).

stackblaze.yaml has no field for the replica log size: every service gets the Desired defaults
(log_max_bytes=10 MiB, log_max_files=5). The log-throughput benchmark writes ~274 MB into one replica's
log, so most lines would be rotated away. This wrapper replaces those two values in what the control plane
hands the supervisor, then runs the unchanged daemon. Only the values sent to the runner change.

    STACKBLAZE_BENCH_LOG_MAX_BYTES=1099511627776 python bench/_sb_daemon.py
"""

from __future__ import annotations

import dataclasses
import os
import sys

from stackblaze.server import control
from stackblaze.server.daemon import main

_original_desired = control.Control.desired


def _desired(self: control.Control, project: str, service: str):  # type: ignore[no-untyped-def]
    desired = _original_desired(self, project, service)
    if desired is None:
        return None
    return dataclasses.replace(
        desired,
        log_max_bytes=int(os.environ.get("STACKBLAZE_BENCH_LOG_MAX_BYTES", desired.log_max_bytes)),
        log_max_files=int(os.environ.get("STACKBLAZE_BENCH_LOG_MAX_FILES", desired.log_max_files)),
    )


control.Control.desired = _desired  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
