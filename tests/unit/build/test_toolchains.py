"""Version matching, the fake machine, and probing this machine's own Python."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from stackblaze.build.toolchains import (
    FakeToolchains,
    Interpreter,
    SystemToolchains,
    describe,
    match_minimum,
    match_node_range,
    match_prefix,
    match_specifier,
)

PYTHONS = (Interpreter("3.11.2", "/usr/bin/python3.11"), Interpreter("3.11.7", "/py/3.11.7"),
           Interpreter("3.12.1", "/py/3.12.1"), Interpreter("3.13.0", "/py/3.13.0"))
NODES = (Interpreter("18.19.0", "/n/18"), Interpreter("20.11.1", "/n/20"), Interpreter("22.1.0", "/n/22"))


@pytest.mark.parametrize(("request_", "expected"), [
    ("3.11", "3.11.7"), ("3.11.*", "3.11.7"), ("3.11.2", "3.11.2"), ("3", "3.13.0"), ("3.10", None),
    ("3.11.3", None),
])
def test_a_prefix_is_the_highest_patch_and_a_full_version_is_exact(request_: str, expected: str | None) -> None:
    found = match_prefix(request_, PYTHONS)
    assert (found.version if found else None) == expected


@pytest.mark.parametrize("bad", ["latest", "3.11rc1", "pypy3.10", ""])
def test_a_prefix_that_is_not_a_version_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        match_prefix(bad, PYTHONS)


def test_a_range_keeps_the_preferred_interpreter_when_it_fits() -> None:
    default = PYTHONS[1]
    assert match_specifier(">=3.10", PYTHONS, prefer=default) == default
    found = match_specifier(">=3.12,<3.13", PYTHONS, prefer=default)
    assert found is not None and found.version == "3.12.1"
    assert match_specifier(">=3.14", PYTHONS, prefer=default) is None
    with pytest.raises(ValueError):
        match_specifier(">>3", PYTHONS, prefer=None)


@pytest.mark.parametrize(("range_", "expected"), [
    (">=20", "22.1.0"), ("20.x", "20.11.1"), ("^20", "20.11.1"), ("~18.19", "18.19.0"), ("18 || 20", "20.11.1"),
    ("v20.11.1", "20.11.1"), (">=18 <20", "18.19.0"), ("*", "22.1.0"), (">=23", None), ("21", None),
])
def test_node_ranges_are_npm_semver(range_: str, expected: str | None) -> None:
    found = match_node_range(range_, NODES)
    assert (found.version if found else None) == expected


def test_a_node_range_that_is_not_one_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        match_node_range("twenty", NODES)


def test_a_minimum_go_version() -> None:
    gos = (Interpreter("1.21.5", "/go121"), Interpreter("1.22.3", "/go122"))
    assert match_minimum("1.21", gos, prefer=gos[0]) == gos[0]
    assert match_minimum("1.22", gos, prefer=gos[0]) == gos[1]
    assert match_minimum("1.23", gos, prefer=gos[0]) is None


def test_describe_lists_versions_in_order() -> None:
    assert describe(PYTHONS[::-1]) == "3.11.2, 3.11.7, 3.12.1, 3.13.0"
    assert describe(()) == "none"


def test_the_fake_machine_is_its_table() -> None:
    machine = FakeToolchains(python=["3.12.1", "3.11.7"], tools={"uv": "0.4.18"}, platform="linux-aarch64")
    assert [i.version for i in machine.installed("python")] == ["3.12.1", "3.11.7"]
    default = machine.default("python")
    assert default == Interpreter("3.12.1", "/opt/python/3.12.1/bin/python3", "24.0")  # the first given
    assert machine.installed("node") == () and machine.default("node") is None
    assert (machine.tool_version("uv"), machine.tool_version("pnpm"), machine.platform) == (
        "0.4.18", None, "linux-aarch64")


def test_this_machine_has_the_python_running_the_tests(tmp_path: Path) -> None:
    machine = SystemToolchains(path=os.path.dirname(sys.executable), home=tmp_path)
    running = platform.python_version()
    default = machine.default("python")
    assert default is not None and default.version == running
    assert os.path.isabs(default.path) and Path(default.path).resolve() == Path(default.path)
    assert default in machine.installed("python")
    assert machine.tool_version("no-such-tool") is None
    assert machine.platform == f"linux-{platform.machine()}"


def test_a_machine_without_a_runtime_reports_none(tmp_path: Path) -> None:
    machine = SystemToolchains(path=str(tmp_path), home=tmp_path)
    assert machine.installed("ruby") == () and machine.default("ruby") is None
