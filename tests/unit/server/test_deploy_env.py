"""What a deploy builds with: the tools on the deploying CLI's PATH, looked up again once one is installed,
and the service's user env merged once for its build and its replicas."""

from __future__ import annotations

from pathlib import Path

from stackblaze.server.control import Control
from stackblaze.server.user_env import merge_user_env
from stackblaze.settings import Settings
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import EnvVar, Store


def make_control(tmp_path: Path) -> Control:
    home = tmp_path / "home"
    home.mkdir()
    return Control(settings=Settings(home=home, time_scale=1.0),
                   store=Store(home / "state.db", SecretBox(home / "secret.key")))


def install(directory: Path, tool: str, version: str) -> None:
    path = directory / tool
    path.write_text(f"#!/bin/sh\necho {tool} {version}\n")
    path.chmod(0o755)


def test_a_tool_missing_at_one_deploy_is_found_by_the_next(tmp_path: Path) -> None:
    control = make_control(tmp_path)
    tools = tmp_path / "bin"
    tools.mkdir()
    assert control.toolchains(str(tools)).tool_version("pnpm") is None
    install(tools, "pnpm", "9.1.0")
    assert control.toolchains(str(tools)).tool_version("pnpm") == "9.1.0"


def test_each_path_has_its_own_probe_and_an_unchanged_one_is_reused(tmp_path: Path) -> None:
    control = make_control(tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    for directory, version in ((old, "8.15.0"), (new, "9.1.0")):
        directory.mkdir()
        install(directory, "pnpm", version)
    first = control.toolchains(str(old))
    assert first.tool_version("pnpm") == "8.15.0"
    assert control.toolchains(f"{new}:{old}").tool_version("pnpm") == "9.1.0"  # first on the CLI's PATH wins
    assert control.toolchains(str(old)) is first  # nothing changed there: no second probe


def test_stored_env_overrides_the_spec_and_a_service_its_project() -> None:
    stored = [EnvVar("LEVEL", "project-stored", False, ""), EnvVar("TOKEN", "s3cr3t", True, ""),
              EnvVar("LEVEL", "mine", False, "worker"), EnvVar("OTHER", "not-mine", True, "web")]
    user = merge_user_env(project_env={"LEVEL": "project-spec", "REGION": "eu"},
                          service_env={"LEVEL": "service-spec", "QUEUE": "jobs"}, stored=stored, service="worker")
    assert user.values == {"LEVEL": "mine", "REGION": "eu", "QUEUE": "jobs", "TOKEN": "s3cr3t"}
    assert user.secrets == {"s3cr3t"}
