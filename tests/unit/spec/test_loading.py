"""load_project: finding the spec, the full example, Procfile-only projects and Procfile fallbacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stackblaze.spec import Project, Service, load_project

from .spec_dir import SpecDir

FULL = """\
    project: acme
    env:                          # project-wide: every service sees these
      REDIS_URL: redis://127.0.0.1:6379/0
      DEBUG: true
      RATIO: 0.5
    services:
      - name: worker
        type: worker
        root: services/email
        build: npm ci && npm run build
        start: node dist/worker.js
        replicas: 2
        env: {QUEUE_NAME: email-dispatch, WORKER_CONCURRENCY: 5}
        stop_signal: SIGTERM
        shutdown_grace: 30s
      - name: reports
        start: python -m app.report
        replicas: 0
        stop_signal: quit
        shutdown_grace: 1m30s
        strategy: recreate
"""


def test_full_example_gives_every_field(spec_dir: SpecDir) -> None:
    (spec_dir.path / "services" / "email").mkdir(parents=True)
    spec_dir.write(FULL)

    project = spec_dir.load()

    assert project == Project(
        name="acme",
        env={"REDIS_URL": "redis://127.0.0.1:6379/0", "DEBUG": "true", "RATIO": "0.5"},
        services=(
            Service(
                name="worker",
                type="worker",
                root="services/email",
                build="npm ci && npm run build",
                start="node dist/worker.js",
                replicas=2,
                env={"QUEUE_NAME": "email-dispatch", "WORKER_CONCURRENCY": "5"},
                stop_signal="SIGTERM",
                shutdown_grace=30.0,
                strategy="rolling",
            ),
            Service(
                name="reports",
                type="worker",
                root=".",
                build=None,
                start="python -m app.report",
                replicas=0,
                env={},
                stop_signal="SIGQUIT",
                shutdown_grace=90.0,
                strategy="recreate",
            ),
        ),
        source=spec_dir.path.resolve(),
        spec_file=spec_dir.path.resolve() / "stackblaze.yaml",
        notes=(),
    )
    assert [service.stop_signal_number for service in project.services] == [15, 3]


def test_source_and_spec_file_are_absolute_when_given_a_relative_path(
    spec_dir: SpecDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir.write("project: acme\nservices: [{name: worker, start: python w.py}]\n")
    monkeypatch.chdir(spec_dir.path.parent)

    project = load_project(Path("acme"))

    assert project.source == spec_dir.path.resolve()
    assert project.spec_file == spec_dir.path.resolve() / "stackblaze.yaml"


def test_yml_is_found_when_there_is_no_yaml(spec_dir: SpecDir) -> None:
    spec_dir.write("project: acme\nservices: [{name: worker, start: python w.py}]\n", name="stackblaze.yml")
    spec_dir.write("worker: ignored\n", name="Procfile")

    project = spec_dir.load()

    assert project.spec_file == spec_dir.path.resolve() / "stackblaze.yml"
    assert project.services[0].start == "python w.py"


def test_a_spec_file_path_can_be_given_directly(spec_dir: SpecDir) -> None:
    file = spec_dir.write("project: other\nservices: [{name: worker, start: python w.py}]\n", name="prod.yaml")

    project = load_project(file)

    assert project.name == "other"
    assert project.spec_file == spec_dir.path.resolve() / "prod.yaml"


def test_a_directory_without_spec_or_procfile_is_an_error(spec_dir: SpecDir) -> None:
    assert spec_dir.error() == f"{spec_dir.path}: no stackblaze.yaml or Procfile found (create one; see README)"


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"nowhere: no such file or directory \(check the path\)$"):
        load_project(tmp_path / "nowhere")


def test_procfile_only_directory_runs_each_process_type_as_one_worker(spec_dir: SpecDir) -> None:
    spec_dir.write(
        """\
        # processes
        web: gunicorn app:app
        worker: celery -A app worker

        high_priority: celery -A app worker -Q high
        """,
        name="Procfile",
    )

    project = spec_dir.load()

    assert project.name == "acme"
    assert project.spec_file is None
    assert [(s.name, s.start, s.replicas, s.root) for s in project.services] == [
        ("worker", "celery -A app worker", 1, "."),
        ("high-priority", "celery -A app worker -Q high", 1, "."),
    ]
    assert project.notes == (
        "Procfile:2: process type 'web' skipped: web processes are not run yet (stackblaze runs workers and"
        f" assigns no port); run it yourself: cd {project.source} && gunicorn app:app",
        "Procfile:5: process type 'high_priority' runs as service 'high-priority'",
    )


def test_procfile_project_name_is_the_directory_name_slugified(tmp_path: Path) -> None:
    directory = tmp_path / "My App_2"
    directory.mkdir()
    (directory / "Procfile").write_text("worker: python w.py\n")

    assert load_project(directory).name == "my-app-2"


def test_procfile_with_only_web_is_an_error(spec_dir: SpecDir) -> None:
    spec_dir.write("web: gunicorn app:app\n", name="Procfile")

    assert spec_dir.error() == (
        "Procfile:1: has no process type to run as a worker (add one, e.g. worker: python worker.py)"
    )


def test_malformed_procfile_line_is_an_error(spec_dir: SpecDir) -> None:
    spec_dir.write("worker: python w.py\n\nxyz\n", name="Procfile")

    assert spec_dir.error() == "Procfile:3: 'xyz' is not 'name: command' (e.g. worker: python worker.py)"


def test_yaml_service_without_start_takes_the_procfile_command_at_its_root(spec_dir: SpecDir) -> None:
    (spec_dir.path / "svc").mkdir()
    spec_dir.write("worker: python svc_worker.py\n", name="svc/Procfile")
    spec_dir.write("worker: python root_worker.py\n", name="Procfile")
    spec_dir.write(
        """\
        project: acme
        services:
          - name: worker
            root: svc
          - name: other
            start: python other.py
        """
    )

    project = spec_dir.load()

    assert [s.start for s in project.services] == ["python svc_worker.py", "python other.py"]


def test_a_malformed_procfile_at_a_service_root_names_its_path(spec_dir: SpecDir) -> None:
    (spec_dir.path / "svc").mkdir()
    spec_dir.write("worker python w.py\n", name="svc/Procfile")
    spec_dir.write("project: acme\nservices:\n  - name: worker\n    root: svc\n")

    assert spec_dir.error() == (
        "svc/Procfile:1: 'worker python w.py' is not 'name: command' (e.g. worker: python worker.py)"
    )


def test_yaml_service_without_start_and_no_matching_procfile_type(spec_dir: SpecDir) -> None:
    spec_dir.write("beat: celery beat\n", name="Procfile")
    spec_dir.write("project: acme\nservices:\n  - name: worker\n    replicas: 2\n")

    assert spec_dir.error() == "stackblaze.yaml:3: services[0].start: missing (e.g. start: python worker.py)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_an_unreadable_spec_is_an_error(spec_dir: SpecDir) -> None:
    spec_dir.write("project: acme\n").chmod(0)

    assert spec_dir.error() == (
        "stackblaze.yaml:1: cannot be read: Permission denied (check that it is a readable file)"
    )
