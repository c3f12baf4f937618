"""Every invalid stackblaze.yaml gives one exact line: file, line, field, value, what is wrong, the fix."""

from __future__ import annotations

import pytest

from .spec_dir import SpecDir

HEAD = "project: acme\nservices:\n  - name: worker\n    start: python worker.py\n"

CASES = {
    "unknown field with a suggestion": (
        HEAD + "    replica: 2\n",
        "stackblaze.yaml:5: services[0].replica: unknown field (did you mean replicas?)",
    ),
    "unknown field without a suggestion": (
        "project: acme\ncolour: blue\nservices: []\n",
        "stackblaze.yaml:2: colour: unknown field (known fields: project, env, services, targets)",
    ),
    "key that is not text": (
        "project: acme\n1: x\nservices: []\n",
        "stackblaze.yaml:2: 1 is not a field name (known fields: project, env, services, targets)",
    ),
    "services is not a list": (
        "project: acme\nservices: worker\n",
        "stackblaze.yaml:2: services: 'worker' is not a list (e.g. services: [{name: worker}])",
    ),
    "services is empty": (
        "project: acme\nservices: []\n",
        "stackblaze.yaml:2: services: [] is empty: add a service (e.g. services: [{name: worker}])",
    ),
    "service is not a mapping": (
        "project: acme\nservices:\n  - worker\n",
        "stackblaze.yaml:3: services[0]: 'worker' is not a mapping (e.g. - name: worker)",
    ),
    "top level is not a mapping": (
        "- a\n- b\n",
        "stackblaze.yaml:1: ['a', 'b'] is not a mapping of settings (start with e.g. project: my-app)",
    ),
    "missing project": (
        "services:\n  - name: worker\n    start: x\n",
        "stackblaze.yaml:1: project: missing (e.g. project: my-app)",
    ),
    "missing service name": (
        "project: acme\nservices:\n  - start: x\n",
        "stackblaze.yaml:3: services[0].name: missing (e.g. name: worker)",
    ),
    "missing start": (
        "project: acme\nservices:\n  - name: worker\n    replicas: 2\n",
        "stackblaze.yaml:3: services[0].start: missing (e.g. start: python worker.py)",
    ),
    "start is not text": (
        "project: acme\nservices:\n  - name: worker\n    start: 7\n",
        "stackblaze.yaml:4: services[0].start: 7 is not a command (e.g. start: python worker.py)",
    ),
    "negative replicas": (
        HEAD + "    replicas: -1\n",
        "stackblaze.yaml:5: services[0].replicas: -1 must be 0 or more (e.g. replicas: 2)",
    ),
    "replicas in words": (
        HEAD + "    replicas: four\n",
        "stackblaze.yaml:5: services[0].replicas: 'four' is not a whole number (e.g. replicas: 4)",
    ),
    "fractional replicas": (
        HEAD + "    replicas: 2.5\n",
        "stackblaze.yaml:5: services[0].replicas: 2.5 is not a whole number (e.g. replicas: 4)",
    ),
    "boolean replicas": (
        HEAD + "    replicas: yes\n",
        "stackblaze.yaml:5: services[0].replicas: True is not a whole number (e.g. replicas: 4)",
    ),
    "too many replicas": (
        HEAD + "    replicas: 1001\n",
        "stackblaze.yaml:5: services[0].replicas: 1001 is more than 1000 (e.g. replicas: 10)",
    ),
    "duplicate service names": (
        HEAD + "  - name: worker\n    start: python other.py\n",
        "stackblaze.yaml:5: services[1].name: 'worker' is already the name of services[0] on line 3"
        " (give each service its own name)",
    ),
    "bad signal": (
        HEAD + "    stop_signal: SIGFOO\n",
        "stackblaze.yaml:5: services[0].stop_signal: 'SIGFOO' is not a signal"
        " (e.g. stop_signal: SIGTERM, SIGINT or SIGQUIT)",
    ),
    "uncatchable signal": (
        HEAD + "    stop_signal: 9\n",
        "stackblaze.yaml:5: services[0].stop_signal: 9 cannot be caught, so the worker could not shut down"
        " cleanly (e.g. stop_signal: SIGTERM, SIGINT or SIGQUIT)",
    ),
    "grace too long": (
        HEAD + "    shutdown_grace: 601s\n",
        "stackblaze.yaml:5: services[0].shutdown_grace: '601s' is longer than the 600 seconds allowed"
        " (e.g. shutdown_grace: 10m)",
    ),
    "grace of zero": (
        HEAD + "    shutdown_grace: 0s\n",
        "stackblaze.yaml:5: services[0].shutdown_grace: '0s' must be more than 0 seconds (e.g. shutdown_grace: 30s)",
    ),
    "bad duration": (
        HEAD + "    shutdown_grace: soon\n",
        "stackblaze.yaml:5: services[0].shutdown_grace: 'soon' is not a duration"
        " (e.g. shutdown_grace: 30s, 1m30s or 500ms)",
    ),
    "bad service name": (
        "project: acme\nservices:\n  - name: Email_Worker\n    start: x\n",
        "stackblaze.yaml:3: services[0].name: 'Email_Worker' is not a valid name: use 1-40 lowercase letters,"
        " digits and '-', starting with a letter (e.g. name: email-worker)",
    ),
    "bad project name": (
        "project: Acme Corp\nservices:\n  - name: worker\n    start: x\n",
        "stackblaze.yaml:1: project: 'Acme Corp' is not a valid name: use 1-40 lowercase letters,"
        " digits and '-', starting with a letter (e.g. project: acme-corp)",
    ),
    "root escaping the project": (
        HEAD + "    root: services/../../other\n",
        "stackblaze.yaml:5: services[0].root: 'services/../../other' leaves the project directory"
        " (e.g. root: services/email)",
    ),
    "absolute root": (
        HEAD + "    root: /etc\n",
        "stackblaze.yaml:5: services[0].root: '/etc' is absolute, not a path inside the project directory"
        " (e.g. root: services/email)",
    ),
    "a cron service with six fields": (
        "project: acme\nservices:\n  - name: nightly\n    schedule: '0 0 3 * * *'\n    type: cron\n"
        "    start: python report.py\n",
        "stackblaze.yaml:4: services[0].schedule: '0 0 3 * * *' has 6 fields, a schedule has 5: minute hour"
        " day-of-month month day-of-week (e.g. schedule: '*/15 * * * *', or '0 3 * * *' for 03:00 every day)",
    ),
    "a cron service without a schedule": (
        "project: acme\nservices:\n  - name: nightly\n    type: cron\n    start: python report.py\n",
        "stackblaze.yaml:3: services[0].schedule: missing (e.g. schedule: '0 3 * * *')",
    ),
    "an unknown time zone": (
        "project: acme\nservices:\n  - name: nightly\n    type: cron\n    schedule: '@daily'\n"
        "    timezone: Mars/Olympus\n    start: python report.py\n",
        "stackblaze.yaml:6: services[0].timezone: 'Mars/Olympus' is not a time zone of the IANA database"
        " (e.g. timezone: Europe/Paris, or UTC)",
    ),
    "replicas on a cron service": (
        "project: acme\nservices:\n  - name: nightly\n    type: cron\n    schedule: '@daily'\n    replicas: 2\n"
        "    start: python report.py\n",
        "stackblaze.yaml:6: services[0].replicas: does not apply to a cron service: each tick runs one process"
        " (remove it, or make a worker)",
    ),
    "a schedule on a worker": (
        HEAD + "    schedule: '@daily'\n",
        "stackblaze.yaml:5: services[0].schedule: only applies to a cron service (add type: cron, or remove it)",
    ),
    "a disk over /etc": (
        HEAD + "    disk: {name: data, mount_path: /etc}\n",
        "stackblaze.yaml:5: services[0].disk.mount_path: '/etc' would hide a system directory: mount the disk"
        " elsewhere (e.g. mount_path: /var/data)",
    ),
    "a disk on two replicas": (
        HEAD + "    replicas: 2\n    disk: {name: data, mount_path: /var/data}\n",
        "stackblaze.yaml:5: services[0].replicas: 2: a service with a disk runs one replica, the only one that"
        " may write it (replicas: 1, or move the data to a database)",
    ),
    "web is not supported yet": (
        HEAD + "    type: web\n",
        "stackblaze.yaml:5: services[0].type: 'web' is not supported yet: workers, cron, redis and postgres run"
        " for now (e.g. type: worker)",
    ),
    "unknown type": (
        HEAD + "    type: daemon\n",
        "stackblaze.yaml:5: services[0].type: 'daemon' is not a service type (one of worker, cron, redis,"
        " postgres; e.g. type: worker)",
    ),
    "misspelt backing type": (
        HEAD + "    type: rediss\n",
        "stackblaze.yaml:5: services[0].type: 'rediss' is not a service type (did you mean redis?)",
    ),
    "a worker field on a backing service": (
        "project: acme\nservices:\n  - name: cache\n    type: redis\n    start: redis-server\n",
        "stackblaze.yaml:5: services[0].start: does not apply to a redis service: it runs the machine's own server,"
        " not your code (remove it, or make a worker: type: worker)",
    ),
    "two replicas of a backing service": (
        "project: acme\nservices:\n  - name: db\n    type: postgres\n    replicas: 2\n",
        "stackblaze.yaml:5: services[0].replicas: 2: a postgres service runs exactly one server, its data on one"
        " disk (replicas: 1, or leave it out)",
    ),
    "bad auth": (
        "project: acme\nservices:\n  - name: cache\n    type: redis\n    auth: yes-please\n",
        "stackblaze.yaml:5: services[0].auth: 'yes-please' is not an auth mode (auth: none, the default on a private"
        " address, or auth: password to generate one)",
    ),
    "bad disk size": (
        "project: acme\nservices:\n  - name: cache\n    type: redis\n    disk: {size: 1GB}\n",
        "stackblaze.yaml:5: services[0].disk.size: '1GB' is not a disk size: a whole number of Mi, Gi or Ti"
        " (e.g. size: 10Gi)",
    ),
    "a reference to a missing service": (
        "project: acme\nenv:\n  REDIS_URL: ${{cach.REDIS_URL}}\nservices:\n  - name: cache\n    type: redis\n"
        "  - name: worker\n    start: python w.py\n",
        "stackblaze.yaml:3: env.REDIS_URL: ${{cach.REDIS_URL}} names no redis or postgres service of the project"
        " (did you mean cache?)",
    ),
    "a reference to a missing variable": (
        "project: acme\nservices:\n  - name: db\n    type: postgres\n  - name: worker\n    start: python w.py\n"
        "    env: {PW: '${{db.PASSWORD}}'}\n",
        "stackblaze.yaml:7: services[1].env.PW: ${{db.PASSWORD}}: db has no password (set auth: password on it)",
    ),
    "bad strategy": (
        HEAD + "    strategy: rollin\n",
        "stackblaze.yaml:5: services[0].strategy: 'rollin' is not a strategy"
        " (did you mean rolling? e.g. strategy: rolling or recreate)",
    ),
    "env is not a mapping": (
        "project: acme\nenv: [A=1]\nservices: [{name: w, start: x}]\n",
        "stackblaze.yaml:2: env: ['A=1'] is not a mapping (e.g. env: {QUEUE_NAME: email})",
    ),
    "bad env key": (
        HEAD + "    env:\n      QUEUE: email\n      'queue name': x\n",
        "stackblaze.yaml:7: services[0].env: 'queue name' is not a variable name: use letters, digits and _,"
        " not starting with a digit (e.g. queue_name: value)",
    ),
    "empty env value": (
        "project: acme\nenv:\n  TOKEN:\nservices: [{name: w, start: x}]\n",
        'stackblaze.yaml:3: env.TOKEN: None is not a value (for an empty value write TOKEN: "")',
    ),
    "list as env value": (
        "project: acme\nenv:\n  HOSTS: [a, b]\nservices: [{name: w, start: x}]\n",
        "stackblaze.yaml:3: env.HOSTS: ['a', 'b'] is not text, a number or true/false (quote it, e.g. HOSTS: \"text\")",
    ),
    "long values are cut": (
        HEAD + "    replicas: " + "x" * 100 + "\n",
        "stackblaze.yaml:5: services[0].replicas: '" + "x" * 36 + "... is not a whole number (e.g. replicas: 4)",
    ),
}


@pytest.mark.parametrize(("text", "message"), list(CASES.values()), ids=list(CASES))
def test_invalid_spec_gives_one_exact_line(spec_dir: SpecDir, text: str, message: str) -> None:
    spec_dir.write(text)

    assert spec_dir.error() == message


def test_root_must_exist(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    root: services/emial\n")

    assert spec_dir.error() == (
        f"stackblaze.yaml:5: services[0].root: 'services/emial' is not a directory in {spec_dir.path.resolve()}"
        " (e.g. root: services/email)"
    )


def test_root_may_not_leave_through_a_symlink(spec_dir: SpecDir) -> None:
    (spec_dir.path / "outside").symlink_to(spec_dir.path.parent)
    spec_dir.write(HEAD + "    root: outside\n")

    assert spec_dir.error() == (
        "stackblaze.yaml:5: services[0].root: 'outside' leaves the project directory through a symlink"
        " (e.g. root: services/email)"
    )


def test_root_is_normalized(spec_dir: SpecDir) -> None:
    (spec_dir.path / "services" / "email").mkdir(parents=True)
    spec_dir.write(HEAD + "    root: ./services//email/\n")

    assert spec_dir.load().services[0].root == "services/email"


def test_env_values_become_strings(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    env: {A: 5, B: 1.5, C: true, D: false, E: text, F: ''}\n")

    assert spec_dir.load().services[0].env == {"A": "5", "B": "1.5", "C": "true", "D": "false", "E": "text", "F": ""}


def test_empty_env_and_build_mean_none(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    env:\n    build:\n")

    service = spec_dir.load().services[0]

    assert (service.env, service.build) == ({}, None)


def test_defaults(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD)

    service = spec_dir.load().services[0]

    assert (service.type, service.root, service.replicas, service.stop_signal) == ("worker", ".", 1, "SIGTERM")
    assert (service.shutdown_grace, service.strategy, service.build) == (30.0, "rolling", None)
