"""`runtime:` and the start command a service gets when stackblaze.yaml and the Procfile give none."""

from __future__ import annotations

import json

from stackblaze.spec.runtimes import matching_runtimes

from .spec_dir import SpecDir

HEAD = "project: acme\nservices:\n  - name: worker\n"


def test_runtime_is_read(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    runtime: node\n    start: node w.js\n")
    spec_dir.write("{}", name="package.json")
    assert spec_dir.load().services[0].runtime == "node"


def test_runtime_defaults_to_detection(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    start: python w.py\n")
    service = spec_dir.load().services[0]
    assert (service.runtime, service.start_source) == (None, None)


def test_an_unknown_runtime_is_one_line_with_a_suggestion(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    start: x\n    runtime: pyhton\n")
    assert spec_dir.error() == ("stackblaze.yaml:5: services[0].runtime: 'pyhton' is not a runtime "
                                "(did you mean python? e.g. runtime: python, node, go or ruby)")
    spec_dir.write(HEAD + "    start: x\n    runtime: [go]\n")
    assert spec_dir.error() == ("stackblaze.yaml:5: services[0].runtime: ['go'] is not a runtime "
                                "(e.g. runtime: python, node, go or ruby)")


def test_node_start_defaults_to_the_command_of_scripts_start(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    replicas: 2\n")
    spec_dir.write(json.dumps({"scripts": {"start": " node dist/worker.js "}}), name="package.json")
    service = spec_dir.load().services[0]
    assert (service.start, service.start_source) == ("node dist/worker.js", "package.json scripts.start")


def test_go_start_defaults_to_the_built_binary(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    root: svc\n")
    spec_dir.write("module w\n", name="svc/go.mod")
    service = spec_dir.load().services[0]
    assert (service.start, service.start_source) == (".stackblaze/bin/worker", "go build")


def test_the_default_follows_the_declared_runtime(spec_dir: SpecDir) -> None:
    spec_dir.write("module w\n", name="go.mod")
    spec_dir.write(json.dumps({"scripts": {"start": "node w.js"}}), name="package.json")
    spec_dir.write(HEAD)
    assert spec_dir.load().services[0].start == ".stackblaze/bin/worker"  # go comes first in detection order
    spec_dir.write(HEAD + "    runtime: node\n")
    assert spec_dir.load().services[0].start == "node w.js"


def test_a_procfile_entry_comes_before_the_default(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD)
    spec_dir.write(json.dumps({"scripts": {"start": "node w.js"}}), name="package.json")
    spec_dir.write("worker: node q.js\n", name="Procfile")
    service = spec_dir.load().services[0]
    assert (service.start, service.start_source) == ("node q.js", "Procfile")


def test_without_a_default_start_is_still_missing(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD)
    spec_dir.write("redis\n", name="requirements.txt")
    spec_dir.write(json.dumps({"scripts": {"build": "tsc"}}), name="package.json")
    assert spec_dir.error() == "stackblaze.yaml:3: services[0].start: missing (e.g. start: python worker.py)"


def test_a_broken_package_json_is_named_when_start_would_come_from_it(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    root: web\n")
    spec_dir.write('{"scripts": }', name="web/package.json")
    assert spec_dir.error() == "web/package.json:1: invalid JSON: Expecting value (fix the file)"


def test_procfile_only_services_say_where_start_came_from(spec_dir: SpecDir) -> None:
    spec_dir.write("worker: python w.py\n", name="Procfile")
    assert spec_dir.load().services[0].start_source == "Procfile"


def test_matching_runtimes_in_detection_order(spec_dir: SpecDir) -> None:
    for name in ("package.json", "Pipfile", "Gemfile", "go.mod"):
        spec_dir.write("{}", name=name)
    assert matching_runtimes(spec_dir.path) == ("go", "ruby", "python", "node")


def test_a_runtime_without_its_files_at_the_root(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    start: node w.js\n    runtime: node\n")
    assert spec_dir.error() == ("stackblaze.yaml:5: services[0].runtime: 'node' needs package.json in the project "
                                "directory (add it, or remove runtime:)")
    spec_dir.write(HEAD + "    start: x\n    root: svc\n    runtime: python\n")
    spec_dir.write("", name="svc/README")
    assert spec_dir.error() == ("stackblaze.yaml:6: services[0].runtime: 'python' needs requirements.txt or "
                                "pyproject.toml or Pipfile in svc (add it, or remove runtime:)")
