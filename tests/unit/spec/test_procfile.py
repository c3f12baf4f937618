"""read_procfile: `name: command` lines, comments, blank lines and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec.procfile import ProcessType, read_procfile


def test_lines_comments_and_blanks(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("# comment\n\nworker: python w.py --queue=a:b\r\n  beat:celery beat  \n")

    assert read_procfile(procfile, label="Procfile") == (
        ProcessType(name="worker", command="python w.py --queue=a:b", line=3),
        ProcessType(name="beat", command="celery beat", line=4),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("worker: a\nxyz\n", "Procfile:2: 'xyz' is not 'name: command' (e.g. worker: python worker.py)"),
        ("worker:\n", "Procfile:1: 'worker:' is not 'name: command' (e.g. worker: python worker.py)"),
        ("my worker: a\n", "Procfile:1: 'my worker: a' is not 'name: command' (e.g. worker: python worker.py)"),
        ("w: a\nw: b\n", "Procfile:2: process type 'w' is defined twice (first on line 1; keep one)"),
    ],
)
def test_errors(tmp_path: Path, text: str, message: str) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(text)

    with pytest.raises(SpecError) as caught:
        read_procfile(procfile, label="Procfile")

    assert str(caught.value) == message


def test_non_utf8(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_bytes(b"worker: a\nbeat: \xfe\n")

    with pytest.raises(SpecError, match=r"^Procfile:2: invalid UTF-8 at byte 16 \(save the file as UTF-8\)$"):
        read_procfile(procfile, label="Procfile")
