"""Python detection: every row of the table, the version files, and the errors that name the asking file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.build.toolchains import FakeToolchains, Interpreter

from .trees import MACHINE, plan_error, plan_for, write

PY311 = "/opt/python/3.11.7/bin/python3"  # FakeToolchains' path for a version given alone


def test_requirements_txt_is_pip_into_a_venv_made_by_the_resolved_interpreter(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"requirements.txt": "redis==5.0\n", "pyproject.toml": "[project]\n"}))
    assert (plan.runtime, plan.package_manager, plan.tool_version) == ("python", "pip", "24.0")
    assert plan.install == (f'{PY311} -m venv "$DEPS/venv" && "$DEPS/venv/bin/pip" install '
                            "--disable-pip-version-check --no-input -r requirements.txt")
    assert plan.lockfiles == ("requirements.txt",)
    assert plan.env == {"VIRTUAL_ENV": "$DEPS/venv", "PATH": "$DEPS/venv/bin:$PATH"}
    # Nothing asked: the interpreter a bare python3 runs (the first in the table), recorded exactly.
    assert (plan.version, plan.version_source, plan.resolved_version) == (None, None, "3.11.7")
    assert plan.build is None and plan.start == "python worker.py" and not plan.install_needs_source


def test_requirements_includes_are_lockfiles_too(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "-r requirements/base.txt\n-c constraints.txt\nredis\n",
                     "requirements/base.txt": "# base\n-r common.txt  # shared\n", "requirements/common.txt": "x\n",
                     "constraints.txt": "x==1\n"})
    plan = plan_for(tmp_path)
    assert plan.lockfiles == ("requirements.txt", "requirements/base.txt", "requirements/common.txt",
                              "constraints.txt")


def test_a_local_path_in_requirements_needs_the_source_and_editable_is_warned(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "redis\n-e .\n", "setup.py": "", "app/main.py": ""})
    plan = plan_for(tmp_path)
    assert plan.install_needs_source
    assert set(plan.lockfiles) == {"requirements.txt", "setup.py", "app/main.py"}
    assert any(w.startswith("requirements.txt:2: '-e .' installs in editable mode") for w in plan.warnings)


def test_pyproject_with_uv_lock_is_uv_sync_of_the_dependencies_only(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"pyproject.toml": "[project]\nname = 'w'\n", "uv.lock": "", "poetry.lock": ""}))
    assert (plan.package_manager, plan.tool_version) == ("uv", "0.4.18")
    assert plan.install == ('UV_PROJECT_ENVIRONMENT="$DEPS/venv" UV_PYTHON_DOWNLOADS=never uv sync --frozen '
                            f"--no-dev --no-install-project --python {PY311}")
    assert plan.lockfiles == ("pyproject.toml", "uv.lock")


def test_pyproject_with_poetry_lock_is_poetry_without_the_project(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"pyproject.toml": "[tool.poetry]\n", "poetry.lock": "", "Pipfile": ""}))
    assert (plan.package_manager, plan.tool_version) == ("poetry", "1.8.3")
    assert plan.install == (f'{PY311} -m venv "$DEPS/venv" && VIRTUAL_ENV="$DEPS/venv" '
                            "POETRY_VIRTUALENVS_CREATE=false poetry install --no-root --no-interaction --only main")
    assert plan.lockfiles == ("pyproject.toml", "poetry.lock")


def test_old_poetry_gets_no_dev_instead_of_only_main(tmp_path: Path) -> None:
    old = FakeToolchains(python=["3.11.7"], tools={"poetry": "1.1.15"})
    plan = plan_for(write(tmp_path, {"pyproject.toml": "", "poetry.lock": ""}), toolchains=old)
    assert plan.install is not None and plan.install.endswith("--no-root --no-interaction --no-dev")


def test_pipfile_is_pipenv_deploy_with_a_lock_and_a_warning_without(tmp_path: Path) -> None:
    write(tmp_path, {"Pipfile": "[packages]\n", "Pipfile.lock": "{}"})
    plan = plan_for(tmp_path)
    assert plan.package_manager == "pipenv"
    assert plan.install is not None and plan.install.endswith("PIPENV_VERBOSITY=-1 pipenv install --deploy")
    assert plan.lockfiles == ("Pipfile", "Pipfile.lock") and plan.warnings == ()
    (tmp_path / "Pipfile.lock").unlink()
    unlocked = plan_for(tmp_path)
    assert unlocked.install is not None and unlocked.install.endswith("pipenv install")
    assert unlocked.warnings == ("Pipfile: no Pipfile.lock, so versions are chosen at each install "
                                 "(run pipenv lock and commit Pipfile.lock)",)


def test_pyproject_alone_is_pip_install_dot_which_needs_the_whole_source(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[project]\nname = 'w'\n", "w/__init__.py": "", ".git/HEAD": "x",
                     "node_modules/x/index.js": ""})
    plan = plan_for(tmp_path)
    assert plan.package_manager == "pip" and plan.install_needs_source
    assert plan.install is not None and plan.install.endswith("--disable-pip-version-check --no-input .")
    assert plan.lockfiles == ("pyproject.toml", "w/__init__.py")  # not .git, not node_modules
    assert any("needs the whole source" in note for note in plan.notes)


@pytest.mark.parametrize(("files", "asked", "source", "resolved"), [
    ({".python-version": "3.12\n"}, "3.12", ".python-version", "3.12.1"),
    ({".python-version": "# pinned\n3.11.2\n"}, "3.11.2", ".python-version", "3.11.2"),
    ({".python-version": "3.11\n", "runtime.txt": "python-3.12.1\n"}, "3.11", ".python-version", "3.11.7"),
    ({"runtime.txt": "python-3.11.7\n"}, "3.11.7", "runtime.txt", "3.11.7"),
    ({"runtime.txt": "python-3.12\n"}, "3.12", "runtime.txt", "3.12.1"),
    ({"pyproject.toml": "[project]\nrequires-python = '>=3.12'\n"}, ">=3.12", "pyproject.toml requires-python",
     "3.12.1"),
    ({"pyproject.toml": "[project]\nrequires-python = '>=3.10'\n"}, ">=3.10", "pyproject.toml requires-python",
     "3.11.7"),  # the default interpreter fits, so it is kept
])
def test_version_files_in_order(tmp_path: Path, files: dict[str, str], asked: str, source: str,
                                resolved: str) -> None:
    plan = plan_for(write(tmp_path, {"requirements.txt": "", **files}))
    assert (plan.version, plan.version_source, plan.resolved_version) == (asked, source, resolved)


def test_the_interpreter_chosen_is_the_one_the_venv_is_made_with(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"requirements.txt": "", ".python-version": "3.11.2"}))
    assert plan.install is not None and plan.install.startswith('/usr/bin/python3.11 -m venv "$DEPS/venv"')
    assert plan.tool_version == "23.0.1"  # the pip that interpreter's venvs get


@pytest.mark.parametrize(("files", "message"), [
    ({".python-version": "3.13\n"},
     ".python-version:1: python 3.13 is not installed here (installed: 3.11.2, 3.11.7, 3.12.1; "
     "install it or change .python-version)"),
    ({"runtime.txt": "\npython-3.10.4\n"},
     "runtime.txt:2: python 3.10.4 is not installed here (installed: 3.11.2, 3.11.7, 3.12.1; "
     "install it or change runtime.txt)"),
    ({"runtime.txt": "python3.11\n"}, "runtime.txt:1: 'python3.11' is not a Python version (write e.g. python-3.11.7)"),
    ({".python-version": "latest\n"}, ".python-version:1: 'latest' is not a python version (e.g. 3.11)"),
    ({"pyproject.toml": "[project]\nname = 'w'\nrequires-python = '>=3.13'\n"},
     "pyproject.toml:3: requires-python: python >=3.13 is not installed here (installed: 3.11.2, 3.11.7, 3.12.1; "
     "install it or change requires-python in pyproject.toml)"),
])
def test_a_version_the_machine_cannot_provide_names_the_file(tmp_path: Path, files: dict[str, str],
                                                              message: str) -> None:
    assert plan_error(write(tmp_path, {"requirements.txt": "", **files})) == message


def test_an_interpreter_that_cannot_make_a_venv_is_not_chosen_for_pip(tmp_path: Path) -> None:
    machine = FakeToolchains(python=[Interpreter("3.11.2", "/usr/bin/python3.11", None), "3.12.1"])
    write(tmp_path, {"requirements.txt": "", ".python-version": "3.11"})
    assert plan_error(tmp_path, toolchains=machine).startswith(".python-version:1: python 3.11 is not installed here")
    assert plan_for(write(tmp_path, {".python-version": "3.12"}), toolchains=machine).resolved_version == "3.12.1"


def test_a_missing_package_manager_names_the_file_that_asked(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "", "uv.lock": ""})
    message = plan_error(tmp_path, toolchains=FakeToolchains(python=["3.11.7"]))
    assert message == "uv.lock: uv is needed but not installed here (install it: pip install uv)"


def test_no_python_at_all(tmp_path: Path) -> None:
    message = plan_error(write(tmp_path, {"requirements.txt": ""}), toolchains=FakeToolchains())
    assert message == "requirements.txt: python is needed but not installed here (install it)"


def test_a_uv_workspace_member_installs_from_the_workspace_root(tmp_path: Path) -> None:
    write(tmp_path, {
        "pyproject.toml": "[tool.uv.workspace]\nmembers = ['services/*']\n", "uv.lock": "",
        ".python-version": "3.12\n",
        "services/email/pyproject.toml": "[project]\nname = 'email-worker'\n", "services/email/app.py": "",
        "services/sms/pyproject.toml": "[project]\nname = 'sms'\n",
        "stackblaze.yaml": "",
    })
    plan = plan_for(tmp_path, root="services/email")
    assert (plan.copy_root, plan.root, plan.workdir) == (".", "services/email", "services/email")
    assert plan.package_manager == "uv" and plan.resolved_version == "3.12.1"  # the workspace's .python-version
    assert plan.lockfiles == ("uv.lock", "pyproject.toml", "services/email/pyproject.toml",
                              "services/sms/pyproject.toml")
    assert plan.install is not None and "--no-install-workspace --package email-worker" in plan.install


def test_a_service_root_labels_its_files_in_errors(tmp_path: Path) -> None:
    write(tmp_path, {"services/email/requirements.txt": "", "services/email/.python-version": "2.7\n"})
    assert plan_error(tmp_path, root="services/email").startswith(
        "services/email/.python-version:1: python 2.7 is not installed here")


def test_invalid_pyproject_is_one_line_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[project]\nname = \n"})
    assert plan_error(tmp_path).startswith("pyproject.toml:2: invalid TOML: ")
    assert MACHINE.platform == "linux-x86_64"
