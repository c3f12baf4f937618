"""Fixtures for spec tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .spec_dir import SpecDir


@pytest.fixture
def spec_dir(tmp_path: Path) -> SpecDir:
    project = tmp_path / "acme"
    project.mkdir()
    return SpecDir(project)
