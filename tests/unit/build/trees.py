"""Fixture trees for detection tests: write files into a project directory, detect a service's plan."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stackblaze.build.detect import detect_plan
from stackblaze.build.plan import BuildPlan
from stackblaze.build.toolchains import FakeToolchains, Interpreter
from stackblaze.errors import SpecError
from stackblaze.spec import Service

# The machine most tests run on: two Pythons, one Node, every package manager.
MACHINE = FakeToolchains(
    python=["3.11.7", "3.12.1", Interpreter("3.11.2", "/usr/bin/python3.11", "23.0.1")],
    node=["20.11.1", "18.19.0"],
    go=["1.22.3"],
    ruby=["3.2.2"],
    tools={"uv": "0.4.18", "poetry": "1.8.3", "pipenv": "2024.0.1", "npm": "10.2.4", "pnpm": "9.1.0",
           "yarn": "1.22.19", "bun": "1.1.8", "bundler": "2.4.10"},
)


def write(root: Path, files: dict[str, str]) -> Path:
    """Write each `relative path: text` under root and return root."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def plan_for(
    project: Path, *, toolchains: FakeToolchains = MACHINE, root: str = ".", start: str = "python worker.py",
    **service: object,
) -> BuildPlan:
    return detect_plan(project, Service(name="worker", root=root, start=start, **service),  # type: ignore[arg-type]
                       toolchains=toolchains)


def plan_error(project: Path, **kwargs: object) -> str:
    with pytest.raises(SpecError) as caught:
        plan_for(project, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)
