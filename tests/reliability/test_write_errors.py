"""Writes the runner could once die of: more pieces than one writev takes (IOV_MAX), and a file-size limit
(EFBIG, where SIGXFSZ would have killed it). Real runners, real pipes, real files."""

from __future__ import annotations

import sys
from typing import Any

from tests.reliability.conftest import wait_for

BURST = """\
import os, time
os.write(1, b"".join(b"short %d\\n" % n for n in range(3000)) + b"L" * 20000 + b"\\nlast\\n")
time.sleep(1e6)
"""


def records(runner: Any, key: str) -> list[bytes]:
    return (runner.home / "logs" / f"{key}.log").read_bytes().splitlines()


def test_thousands_of_lines_and_a_long_one_in_one_read(start_runner: Any) -> None:
    runner = start_runner()
    assert runner.spawn("burst", [sys.executable, "-c", BURST])["ok"]
    lines = wait_for("every line of the burst", lambda: (r := records(runner, "burst")) and r[-1].endswith(b" last")
                     and r)
    assert len(lines) == 3000 + 2 + 1  # 3,000 short, the long one in two records (P, F), the last
    assert runner.call("list")["instances"][0]["dropped_lines"] == 0


def test_a_file_size_limit_costs_lines_not_the_runner(start_runner: Any) -> None:
    """RLIMIT_FSIZE of 64 KiB on the runner: writes past it fail with EFBIG; lines are counted as dropped."""
    runner = start_runner(prlimit=["--fsize=65536"])
    chatty = "import os, time\nwhile True:\n    os.write(1, b'x' * 99 + b'\\n')\n    time.sleep(0.0005)\n"
    assert runner.spawn("chatty", [sys.executable, "-c", chatty], log_max_bytes=10 << 20)["ok"]
    record = wait_for("lines to be dropped at the size limit", lambda: (
        i := runner.call("list")["instances"][0]) and i["dropped_lines"] > 100 and i)
    assert "File too large" in record["dropped_error"] and record["state"] == "running"
    assert runner.process.poll() is None
    size = (runner.home / "logs" / "chatty.log").stat().st_size
    assert size <= 65536
    assert all(line.endswith(b"x" * 99) for line in records(runner, "chatty"))  # no torn record
    print(f"\nat a 64 KiB file-size limit: {record['dropped_lines']} lines dropped and counted, runner alive")
