"""`release:`: a Procfile's release process type and a service's `release:` field in stackblaze.yaml."""

from __future__ import annotations

from tests.unit.spec.spec_dir import SpecDir


def test_procfile_release_runs_before_the_first_worker_and_is_no_service(spec_dir: SpecDir) -> None:
    spec_dir.write("release: psql \"$DATABASE_URL\" -f schema.sql\nworker: python w.py\nmailer: python m.py\n",
                   name="Procfile")

    project = spec_dir.load()

    assert [(s.name, s.release) for s in project.services] == [
        ("worker", 'psql "$DATABASE_URL" -f schema.sql'), ("mailer", None)]
    assert not any("release" in note for note in project.notes)


def test_procfile_with_only_release_has_no_worker(spec_dir: SpecDir) -> None:
    spec_dir.write("release: python migrate.py\n", name="Procfile")

    assert spec_dir.error() == (
        "Procfile:1: has no process type to run as a worker (add one, e.g. worker: python worker.py)")


def test_a_service_release_field_is_a_command(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: worker
            start: python w.py
            release: "  python migrate.py  "
          - name: other
            start: python o.py
        """)

    assert [s.release for s in spec_dir.load().services] == ["python migrate.py", None]


def test_an_empty_release_field_says_what_to_write(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: worker
            start: python w.py
            release: ""
        """)

    assert spec_dir.error() == (
        "stackblaze.yaml:5: services[0].release: '' is empty (e.g. release: python manage.py migrate)")
