"""The runner's own log on a full filesystem: what it could not write is kept (the last 100 messages) and
written, with the count of those lost, as soon as a message can be written again. A real tmpfs, filled."""

from __future__ import annotations

import os
from pathlib import Path

from stackblaze.engine.local.runnerlog import HELD, RunnerLog
from tests.reliability.conftest import fill, tmpfs


def test_messages_held_while_full_are_written_when_space_returns(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "64k") as fs:
        path = fs / "runner.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"#" * 4095 + b"\n")  # its page is full: one more byte needs a page there is none of
            filler = fill(fs)
            log = RunnerLog(fd)
            for n in range(HELD + 50):
                log.say(f"message {n}")
            assert path.read_bytes().count(b"\n") == 1, "written while the disk was full?"
            assert log.status() == {"held": HELD, "lost": 50}

            filler.unlink()
            log.say("space is back")
        finally:
            os.close(fd)
        lines = path.read_text().splitlines()[1:]
    assert lines[0].endswith("50 messages were lost while this file could not be written")
    assert [line.split(": ", 1)[1] for line in lines[1:]] == [f"message {n}" for n in range(50, HELD + 50)] + [
        "space is back"]
    assert log.status() == {"held": 0, "lost": 50}
    print(f"\nrunner.log on a full disk: {HELD} messages kept and written after, 50 counted as lost")
