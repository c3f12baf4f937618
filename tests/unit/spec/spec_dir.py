"""SpecDir: a project directory that tests write specs into and load."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec import Project, load_project


@dataclass
class SpecDir:
    """A project directory under tmp_path."""

    path: Path

    def write(self, text: str, name: str = "stackblaze.yaml") -> Path:
        file = self.path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text), encoding="utf-8")
        return file

    def load(self) -> Project:
        return load_project(self.path)

    def error(self) -> str:
        with pytest.raises(SpecError) as caught:
            load_project(self.path)
        return str(caught.value)
