"""Which project a command acts on: --project, STACKBLAZE_PROJECT, the current directory's, then the only
deployed one. In every test a second project (the bundled demo) is deployed beside the one under test,
as it is on the machine of a user who ran `stackblaze demo` first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackblaze.cli.demo import EXAMPLE
from tests.integration.conftest import Stackblaze, wait_for, write_project

WORKER = """\
import os, time
print("broker", os.environ.get("BROKER_URL", "<unset>"), flush=True)
if "BROKER_URL" not in os.environ:
    raise SystemExit("no BROKER_URL")
time.sleep(1e6)
"""
SPEC = "project: my-app\nservices:\n  - name: worker\n    start: python3 -u worker.py\n"


@pytest.fixture
def demo(sb: Stackblaze) -> str:
    """The bundled demo, deployed beside the project under test."""
    sb.run("deploy", str(EXAMPLE))
    return "demo"


def my_app(tmp_path: Path) -> Path:
    return write_project(tmp_path / "my-app", SPEC, {"worker.py": WORKER, "src/jobs/__init__.py": ""})


def sections(text: str) -> dict[str, list[str]]:
    """Grouped output: the lines under each `project NAME` heading."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("project "):
            current = found.setdefault(line.split()[1], [])
        else:
            current.append(line)
    return found


def projects_shown(result: dict) -> set[str]:
    return {service["project"] for service in result["services"]}


def test_the_readme_flow_works_with_the_demo_deployed(sb: Stackblaze, tmp_path: Path, demo: str) -> None:
    """`cd my-app && stackblaze env set ... && stackblaze deploy && stackblaze ps`: no --project anywhere."""
    app = my_app(tmp_path)
    sb.run("env", "set", "BROKER_URL=redis://127.0.0.1:6379/0", cwd=app)
    sb.run("deploy", cwd=app)
    here = json.loads(sb.run("ps", "--json", cwd=app).out)
    assert here["project"] == "my-app" and projects_shown(here) == {"my-app"}
    table = sb.run("ps", cwd=app).out
    assert "worker.1" in table and "project demo" not in table
    # deeper in the tree, the nearest stackblaze.yaml walking up decides
    deeper = json.loads(sb.run("ps", "--json", cwd=app / "src" / "jobs").out)
    assert deeper["project"] == "my-app"
    # `deploy` from inside the tree deploys the project it belongs to, not the directory it is run in
    again = sb.run("deploy", "--json", cwd=app / "src" / "jobs").json()
    assert again["project"] == "my-app" and again["services"][0]["new_release"] is False
    scaled = sb.run("scale", "worker", "--replicas", "2", "--json", cwd=app / "src").json()
    assert scaled["replicas"] == 2
    assert [s["desired"] for s in sb.run("ps", "--json", "--project", "demo").json()["services"]] == [2]


def test_flag_beats_environment_beats_directory(sb: Stackblaze, tmp_path: Path, demo: str) -> None:
    app = my_app(tmp_path)
    sb.run("env", "set", "BROKER_URL=x", cwd=app)
    sb.run("deploy", str(app))
    assert sb.run("ps", "--json", "--project", "demo", cwd=app).json()["project"] == "demo"
    sb.env["STACKBLAZE_PROJECT"] = "demo"
    try:
        assert sb.run("ps", "--json", cwd=app).json()["project"] == "demo"
        assert sb.run("ps", "--json", "--project", "my-app", cwd=app).json()["project"] == "my-app"
    finally:
        del sb.env["STACKBLAZE_PROJECT"]
    assert sb.run("ps", "--json", cwd=app).json()["project"] == "my-app"


def test_without_project_context_ps_and_events_show_every_project_grouped(
        sb: Stackblaze, tmp_path: Path, demo: str) -> None:
    app = my_app(tmp_path)
    sb.run("env", "set", "BROKER_URL=x", cwd=app)
    sb.run("deploy", str(app))
    nowhere = tmp_path / "elsewhere"
    nowhere.mkdir()
    every = sb.run("ps", "--json", cwd=nowhere).json()
    assert every["project"] is None and every["projects"] == ["demo", "my-app"]
    assert projects_shown(every) == {"demo", "my-app"}
    table = sb.run("ps", cwd=nowhere).out
    assert table.index("project demo") < table.index("project my-app")
    assert table.index("project my-app") < table.rindex("worker.1")
    # --all from inside a project shows the others too
    assert sb.run("ps", "--all", "--json", cwd=app).json()["projects"] == ["demo", "my-app"]
    groups = sections(sb.run("events", cwd=nowhere).out)
    assert sorted(groups) == ["demo", "my-app"]
    assert all(any("deployed worker@1" in line for line in lines) for lines in groups.values())
    # a command that changes something still needs one project
    ambiguous = sb.run("restart", "worker", check=False, cwd=nowhere)
    assert ambiguous.code == 2
    assert ambiguous.err.strip() == ("error: several projects are deployed (demo, my-app): pass --project NAME, "
                                     "or run the command in the project's directory")


def test_a_procfile_project_is_named_as_deploy_names_it(sb: Stackblaze, tmp_path: Path, demo: str) -> None:
    app = tmp_path / "My Shop_2"
    app.mkdir()
    (app / "Procfile").write_text("worker: python3 -u -c 'import time; print(\"up\", flush=True); time.sleep(1e6)'\n")
    deployed = sb.run("deploy", "--json", cwd=app).json()
    assert deployed["project"] == "my-shop-2"
    assert sb.run("ps", "--json", cwd=app).json()["project"] == "my-shop-2"
    wait_for("the worker's first line", lambda: "up" in sb.run("logs", "worker", cwd=app).out)


def test_env_set_before_the_first_deploy_reaches_the_first_start(sb: Stackblaze, tmp_path: Path, demo: str) -> None:
    """The worker exits when BROKER_URL is missing: it never does, because the first start has it."""
    app = my_app(tmp_path)
    before = sb.run("env", "set", "BROKER_URL=redis://10.1.2.3:6379/0", cwd=app)
    assert before.out.strip() == ("set BROKER_URL; project my-app is not deployed yet: its first deploy uses them")
    assert "BROKER_URL=redis://10.1.2.3:6379/0" in sb.run("env", "list", cwd=app).out
    assert sb.run("ps", "--json").json()["projects"] == ["demo"]  # setting env deploys nothing
    sb.run("deploy", cwd=app)
    line = wait_for("the worker's first line", lambda: sb.run("logs", "worker", "--replica", "1", cwd=app).out)
    assert line.splitlines()[0] == "worker.1 | broker redis://10.1.2.3:6379/0"
    replica = sb.run("ps", "worker", "--json", cwd=app).json()["services"][0]["replicas"][0]
    assert replica["state"] == "running" and replica["restart_count"] == 0 and replica["last_exit"] is None
    # the demo saw none of it
    assert "BROKER_URL" not in sb.run("env", "list", "--project", "demo").out


def test_an_undeployed_project_named_by_flag_is_not_deployed_for_reads(sb: Stackblaze, tmp_path: Path,
                                                                         demo: str) -> None:
    app = my_app(tmp_path)
    missing = sb.run("ps", "--json", check=False, cwd=app)
    assert missing.code == 3
    assert json.loads(missing.err)["error"].startswith("project 'my-app' is not deployed (deployed: demo;")
