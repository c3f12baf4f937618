"""The stackblaze.yaml schema: turn a parsed Document into a Project, first error wins."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from stackblaze.spec import fields
from stackblaze.spec.autoscale import read_autoscale
from stackblaze.spec.cron import Cron, read_cron
from stackblaze.spec.disks import check_size, read_disk
from stackblaze.spec.document import Document
from stackblaze.spec.logs import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES, parse_files, parse_size
from stackblaze.spec.messages import did_you_mean, fail, join, show
from stackblaze.spec.model import Project, Service, Strategy
from stackblaze.spec.references import problem, references
from stackblaze.spec.rollout import (
    DEFAULT_MIN_READY,
    DEFAULT_PROGRESS_DEADLINE,
    Rolling,
    check_amount,
    check_min_ready,
    check_progress_deadline,
    check_rolling,
)
from stackblaze.spec.runtimes import check_runtime, default_start
from stackblaze.spec.signals import parse_signal
from stackblaze.spec.targets import read_targets

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}", re.ASCII)  # what Debian's useradd takes (NAME_REGEX)
# Maps a service root to the Procfile commands found there ({} when there is no Procfile).
FindCommands = Callable[[str], Mapping[str, str]]

# Only for type: cron.
CRON_FIELDS = {
    "schedule": "schedule: '0 3 * * *'",
    "timezone": "timezone: UTC",
    "concurrency": "concurrency: forbid",
    "timeout": "timeout: 30m",
    "catch_up": "catch_up: true",
    "retries": "retries: 2",
    "history": "history: 10",
}
# A cron run is one process, started by the schedule: no replicas to count or roll.
NOT_FOR_CRON = ("replicas", "strategy", "rolling", "min_ready", "progress_deadline", "autoscale")
PROJECT_FIELDS = {"project": "project: my-app", "env": "env: {KEY: value}", "services": "services: [...]",
                  "targets": "targets: {prod: {kind: kubernetes, registry: registry.example.com/acme}}"}
SERVICE_FIELDS = {
    "name": "name: worker",
    "type": "type: worker",
    "root": "root: .",
    "start": "start: python worker.py",
    "build": "build: npm run build",
    "release": "release: python manage.py migrate",
    "runtime": "runtime: python",
    "replicas": "replicas: 2",
    "env": "env: {KEY: value}",
    "stop_signal": "stop_signal: SIGTERM",
    "shutdown_grace": "shutdown_grace: 30s",
    "strategy": "strategy: rolling",
    "rolling": "rolling: {max_surge: 1, max_unavailable: 0}",
    "min_ready": "min_ready: 10s",
    "progress_deadline": "progress_deadline: 10m",
    "logs": "logs: {max_size: 10Mi, max_files: 5}",
    "user": "user: stackblaze-worker",
    "disk": "disk: {name: data, mount_path: /var/data, size: 1Gi}",
    "autoscale": "autoscale: {min: 0, max: 8, queues: {kind: celery, url: ${{cache.REDIS_URL}}}}",
    **CRON_FIELDS,
}
# A backing service is a server of the machine: no source, build or start of its own.
BACKING_FIELDS = {
    "name": "name: cache",
    "type": "type: redis",
    "auth": "auth: password",
    "disk": "disk: {size: 1Gi}",
    "replicas": "replicas: 1",
    "shutdown_grace": "shutdown_grace: 30s",
    "logs": "logs: {max_size: 10Mi, max_files: 5}",
}
DISK_FIELDS = {"size": "size: 1Gi"}
_AUTH = ("none", "password")
# Redis saves its append-only file on SIGTERM; PostgreSQL's fast shutdown is SIGINT (SIGTERM waits for every
# session, and a pooled client's never ends).
BACKING_STOP_SIGNALS = {"redis": "SIGTERM", "postgres": "SIGINT"}
LOG_FIELDS = {"max_size": "max_size: 10Mi", "max_files": "max_files: 5"}
ROLLING_FIELDS = {"max_surge": "max_surge: 1", "max_unavailable": "max_unavailable: 0"}


def read_project(doc: Document, *, source: Path, spec_file: Path, find_commands: FindCommands) -> Project:
    """Validate doc.data as a stackblaze.yaml and return the Project it describes."""
    data = doc.data
    if not isinstance(data, dict):
        raise fail(doc.at(""), f"{show(data)} is not a mapping of settings (start with e.g. project: my-app)")
    _check_keys(doc, data, "", PROJECT_FIELDS, required=("project", "services"))
    name = fields.check_name(data["project"], where=doc.at("project"), key="project")
    env = _read_env(doc, data.get("env"), "env") if "env" in data else {}
    raw_services = data["services"]
    if not isinstance(raw_services, list):
        raise fail(doc.at("services"), f"{show(raw_services)} is not a list (e.g. services: [{{name: worker}}])")
    if not raw_services:
        raise fail(doc.at("services"), "[] is empty: add a service (e.g. services: [{name: worker}])")
    services: dict[str, Service] = {}
    for index, raw in enumerate(raw_services):
        service = _read_service(doc, raw, f"services[{index}]", source, find_commands)
        if service.name in services:
            first = list(services).index(service.name)
            taken = f"is already the name of services[{first}] on line {doc.line(f'services[{first}].name')}"
            raise fail(
                doc.at(f"services[{index}].name"),
                f"{show(service.name)} {taken} (give each service its own name)",
            )
        services[service.name] = service
    for index, service in enumerate(services.values()):
        where = doc.at(f"services[{index}].env" if "env" in raw_services[index] else f"services[{index}]")
        fields.check_env_total({**env, **service.env}, where=where, reserve=fields.PLATFORM_ENV_RESERVE)
    _check_references(doc, env, list(services.values()))
    _check_disks(doc, list(services.values()))
    targets = read_targets(data.get("targets"), at=doc.at)
    return Project(name=name, env=env, services=tuple(services.values()), source=source, spec_file=spec_file,
                   targets=targets)


def _read_service(doc: Document, raw: object, path: str, source: Path, find_commands: FindCommands) -> Service:
    if not isinstance(raw, dict):
        raise fail(doc.at(path), f"{show(raw)} is not a mapping (e.g. - name: worker)")
    # The type decides which fields make sense, so an unsupported type is reported before anything else.
    kind = fields.check_type(raw["type"], where=doc.at(f"{path}.type")) if "type" in raw else "worker"
    if kind in ("redis", "postgres"):
        return _read_backing(doc, raw, path)
    _check_keys(doc, raw, path, SERVICE_FIELDS, required=("name",) + (("schedule",) if kind == "cron" else ()))
    for key in raw:
        if kind == "cron" and key in NOT_FOR_CRON:
            raise fail(doc.at(join(path, str(key)), key=True), "does not apply to a cron service: each tick runs "
                                                               "one process (remove it, or make a worker)")
        if kind == "worker" and key in CRON_FIELDS:
            raise fail(doc.at(join(path, str(key)), key=True), "only applies to a cron service (add type: cron, "
                                                               "or remove it)")
    name = fields.check_name(raw["name"], where=doc.at(f"{path}.name"), key="name")
    root = fields.check_root(raw.get("root", "."), where=doc.at(f"{path}.root"), source=source)
    runtime = None
    if "runtime" in raw:
        runtime = check_runtime(raw["runtime"], where=doc.at(f"{path}.runtime"), directory=source / root, root=root)
    start_source = None
    if "start" in raw:
        start = fields.check_command(raw["start"], where=doc.at(f"{path}.start"), key="start")
    elif name in (commands := find_commands(root)):
        start, start_source = commands[name], "Procfile"
    elif found := default_start(source, root, service=name, runtime=runtime):
        start, start_source = found
    else:
        raise fail(doc.at(f"{path}.start", line_of=path), "missing (e.g. start: python worker.py)")
    log_bytes, log_files = _read_logs(doc, raw.get("logs"), f"{path}.logs")
    strategy = fields.check_strategy(raw.get("strategy", "rolling"), where=doc.at(f"{path}.strategy"))
    rolling = _read_rolling(doc, raw.get("rolling"), f"{path}.rolling", strategy)
    min_ready = check_min_ready(raw.get("min_ready", DEFAULT_MIN_READY), where=doc.at(f"{path}.min_ready"))
    deadline = check_progress_deadline(raw.get("progress_deadline", DEFAULT_PROGRESS_DEADLINE),
                                       where=doc.at(f"{path}.progress_deadline"), min_ready=min_ready)
    build = None
    if raw.get("build") is not None:
        build = fields.check_command(raw["build"], where=doc.at(f"{path}.build"), key="build")
    release = None
    if raw.get("release") is not None:
        release = fields.check_command(raw["release"], where=doc.at(f"{path}.release"), key="release")
    cron = read_cron(raw, at=lambda key: doc.at(f"{path}.{key}")) if kind == "cron" else None
    disk = None
    if raw.get("disk") is not None:
        disk = read_disk(raw["disk"], at=lambda key: doc.at(f"{path}.disk" + (f".{key}" if key else "")),
                         service=name)
    replicas = fields.check_replicas(raw.get("replicas", 1), where=doc.at(f"{path}.replicas"))
    autoscale = None
    if raw.get("autoscale") is not None:
        autoscale = read_autoscale(raw["autoscale"],
                                   lambda key: doc.at(f"{path}.autoscale" + (f".{key}" if key else "")))
        if disk is not None and autoscale.max > 1:
            raise fail(doc.at(f"{path}.autoscale.max"), f"{autoscale.max}: a service with a disk runs one replica, the "
                                                        "only one that may write it (max: 1, or remove the disk)")
    if disk is not None and replicas > 1:
        raise fail(doc.at(f"{path}.replicas"), f"{replicas}: a service with a disk runs one replica, the only one "
                                               "that may write it (replicas: 1, or move the data to a database)")
    if disk is not None:
        strategy = _disk_strategy(doc, raw, path, cron)
    return Service(
        name=name,
        type=kind,
        cron=cron,
        disk=disk,
        autoscale=autoscale,
        root=root,
        start=start,
        build=build,
        release=release,
        runtime=runtime,
        start_source=start_source,
        replicas=replicas,
        env=_read_env(doc, raw["env"], f"{path}.env") if "env" in raw else {},
        stop_signal=parse_signal(raw.get("stop_signal", "SIGTERM"), where=doc.at(f"{path}.stop_signal")),
        shutdown_grace=fields.check_grace(raw.get("shutdown_grace", 30), where=doc.at(f"{path}.shutdown_grace")),
        strategy=strategy,
        rolling=rolling,
        min_ready=min_ready,
        progress_deadline=deadline,
        log_max_bytes=log_bytes,
        log_max_files=log_files,
        user=_read_user(doc, raw["user"], f"{path}.user") if raw.get("user") is not None else None,
    )


def _disk_strategy(doc: Document, raw: dict[object, object], path: str, cron: Cron | None) -> Strategy:
    """A disk is written by one process at a time: a rollout stops the old replica before the new one starts
    (a surge replica would share it), and a cron service's runs never overlap."""
    why = "two processes would write the disk at once"
    if "rolling" in raw or raw.get("strategy") == "rolling":
        key = "rolling" if "rolling" in raw else "strategy"
        raise fail(doc.at(f"{path}.{key}", key=key == "rolling"),
                   f"a service with a disk is deployed with strategy: recreate, since a rolling deploy's new replica "
                   f"would share the disk with the old one (remove {key}:, or set strategy: recreate)")
    if cron is not None and cron.concurrency == "allow":
        raise fail(doc.at(f"{path}.concurrency"), f"'allow': {why} (concurrency: forbid, or remove the disk)")
    return "recreate"


def _check_disks(doc: Document, services: list[Service]) -> None:
    """Disk names are the project's own: each is one directory under disks/<project>/ (where a backing
    service keeps its data under its own name) and one PersistentVolumeClaim."""
    taken = {s.name: f"the {s.type} service {s.name}'s data" for s in services if s.is_backing}
    for index, service in enumerate(services):
        if service.disk is None:
            continue
        where = f"services[{index}].disk" + (".name" if f"services[{index}].disk.name" in doc.lines else "")
        if service.disk.name in taken:
            raise fail(doc.at(where), f"{show(service.disk.name)} is already the name of "
                                      f"{taken[service.disk.name]} (give the disk its own name, e.g. "
                                      f"name: {service.name}-data)")
        taken[service.disk.name] = f"services[{index}]'s disk"


def _read_backing(doc: Document, raw: dict[object, object], path: str) -> Service:
    kind = fields.check_type(raw["type"], where=doc.at(f"{path}.type"))
    assert kind in BACKING_STOP_SIGNALS
    for key in raw:
        if isinstance(key, str) and key in SERVICE_FIELDS and key not in BACKING_FIELDS:
            raise fail(doc.at(join(path, key), key=True),
                       f"does not apply to a {kind} service: it runs the machine's own server, not your code "
                       f"(remove it, or make a worker: type: worker)")
    _check_keys(doc, raw, path, BACKING_FIELDS, required=("name",))
    name = fields.check_name(raw["name"], where=doc.at(f"{path}.name"), key="name")
    replicas = raw.get("replicas", 1)
    if replicas != 1 or isinstance(replicas, bool):
        raise fail(doc.at(f"{path}.replicas"), f"{show(replicas)}: a {kind} service runs exactly one server, "
                                               "its data on one disk (replicas: 1, or leave it out)")
    auth = raw.get("auth", "none")
    if auth not in _AUTH:
        raise fail(doc.at(f"{path}.auth"), f"{show(auth)} is not an auth mode (auth: none, the default on a "
                                           "private address, or auth: password to generate one)")
    disk_size = "1Gi"
    if raw.get("disk") is not None:
        disk = raw["disk"]
        if not isinstance(disk, dict):
            raise fail(doc.at(f"{path}.disk"), f"{show(disk)} is not a mapping (e.g. disk: {{size: 1Gi}})")
        _check_keys(doc, disk, f"{path}.disk", DISK_FIELDS, required=())
        disk_size = check_size(disk.get("size", "1Gi"), where=doc.at(f"{path}.disk.size"))
    log_bytes, log_files = _read_logs(doc, raw.get("logs"), f"{path}.logs")
    return Service(
        name=name, type=kind, start=kind, start_source=f"type: {kind}", replicas=1, strategy="recreate",
        min_ready=0.0, auth=auth, disk_size=disk_size,  # type: ignore[arg-type]
        stop_signal=BACKING_STOP_SIGNALS[kind],
        shutdown_grace=fields.check_grace(raw.get("shutdown_grace", 30), where=doc.at(f"{path}.shutdown_grace")),
        log_max_bytes=log_bytes, log_max_files=log_files,
    )


def _check_references(doc: Document, env: Mapping[str, str], services: list[Service]) -> None:
    """Every `${{service.VAR}}` in the project's and the workers' env names a value that will exist."""
    backing = {s.name: (s.type, s.auth == "password") for s in services if s.is_backing}
    scopes = [("env", env)] + [(f"services[{i}].env", s.env) for i, s in enumerate(services)]
    scopes += [(f"services[{i}].autoscale.queues", {"url": s.autoscale.queues.url})
               for i, s in enumerate(services) if s.autoscale is not None]
    for path, values in scopes:
        for key, value in values.items():
            for service, variable in references(value):
                wrong = problem(service, variable, backing)  # type: ignore[arg-type]
                if wrong is not None:
                    raise fail(doc.at(join(path, key)), f"{wrong}")


def _read_user(doc: Document, raw: object, path: str) -> str:
    """A login name as useradd accepts it; whether it exists is the deploying machine's to say."""
    if isinstance(raw, str) and _USER.fullmatch(raw):
        return raw
    raise fail(doc.at(path), f"{show(raw)} is not a user name: 1-32 of a-z, 0-9, '_' and '-', not starting "
                             f"with '-' or a digit (e.g. user: stackblaze-worker)")


def _read_logs(doc: Document, raw: object, path: str) -> tuple[int, int]:
    if raw is None:
        return DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES
    if not isinstance(raw, dict):
        raise fail(doc.at(path), f"{show(raw)} is not a mapping (e.g. logs: {{max_size: 10Mi, max_files: 5}})")
    _check_keys(doc, raw, path, LOG_FIELDS, required=())
    size = parse_size(raw.get("max_size", DEFAULT_MAX_BYTES), where=doc.at(f"{path}.max_size"))
    files = parse_files(raw.get("max_files", DEFAULT_MAX_FILES), where=doc.at(f"{path}.max_files"))
    return size, files


def _read_rolling(doc: Document, raw: object, path: str, strategy: Strategy) -> Rolling:
    if raw is None:
        return Rolling()
    if strategy != "rolling":
        raise fail(doc.at(path, key=True), f"only applies to strategy: rolling (this service uses {strategy}; "
                                           "remove rolling: or set strategy: rolling)")
    if not isinstance(raw, dict):
        raise fail(doc.at(path), f"{show(raw)} is not a mapping (e.g. rolling: {{max_surge: 1, max_unavailable: 0}})")
    _check_keys(doc, raw, path, ROLLING_FIELDS, required=())
    surge = check_amount(raw.get("max_surge", 1), where=doc.at(f"{path}.max_surge"), key="max_surge")
    unavailable = check_amount(raw.get("max_unavailable", 0), where=doc.at(f"{path}.max_unavailable"),
                               key="max_unavailable")
    return check_rolling(surge, unavailable, where=doc.at(path))


def _read_env(doc: Document, raw: object, path: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail(doc.at(path), f"{show(raw)} is not a mapping (e.g. env: {{QUEUE_NAME: email}})")
    env: dict[str, str] = {}
    for key, value in raw.items():
        child = join(path, key)
        clean_key = fields.check_env_key(key, where=doc.at(path, line_of=child, key=True))
        env[clean_key] = fields.check_env_value(value, where=doc.at(child), key=clean_key)
    return env


def _check_keys(
    doc: Document,
    raw: dict[object, object],
    path: str,
    known: Mapping[str, str],
    *,
    required: tuple[str, ...],
) -> None:
    """Reject unknown keys (suggesting the closest known one), then missing required keys."""
    for key in raw:
        if isinstance(key, str) and key in known:
            continue
        guess = did_you_mean(key, known)
        hint = f"did you mean {guess}?" if guess else "known fields: " + ", ".join(known)
        if not isinstance(key, str):
            where = doc.at(path, line_of=join(path, key), key=True)
            raise fail(where, f"{show(key)} is not a field name ({hint})")
        raise fail(doc.at(join(path, key), key=True), f"unknown field ({hint})")
    for key in required:
        if key not in raw:
            raise fail(doc.at(join(path, key), line_of=path), f"missing (e.g. {known[key]})")
