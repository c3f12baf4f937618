"""Where a project runs: `targets:` in stackblaze.yaml, and the `--target/--context/--namespace/--registry` flags.

The local engine is the default target (named "local"). A `kubernetes` target deploys to a cluster through
a kubeconfig context, pushing images to its registry. A `fake` target is the in-process fake cluster
(engine/kubernetes/fake.py): the same commands against a simulated cluster that runs no image, for tests
and for trying the Kubernetes path on a machine with none; `behaviours` tells its containers what to do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from stackblaze.errors import UserError
from stackblaze.spec.duration import parse_duration
from stackblaze.spec.messages import did_you_mean, fail, show

TargetKind = Literal["local", "kubernetes", "fake"]
TargetRequest = tuple[str | None, str | None, str | None, str | None]  # --target, --context, --namespace, --registry
KINDS: tuple[TargetKind, ...] = ("local", "kubernetes", "fake")
LOCAL = "local"
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TARGET_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
# host[:port][/path]: where `docker push` would send an image (no scheme, no tag)
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[a-z0-9._/-]+)?")
TARGET_FIELDS = {"kind": "kind: kubernetes", "context": "context: prod-cluster", "namespace": "namespace: acme",
                 "registry": "registry: registry.example.com/acme", "insecure_registry": "insecure_registry: true",
                 "behaviours": "behaviours: {python worker.py: {exits_after: 1s, exit_code: 3}}"}
BEHAVIOUR_FIELDS = {"exits_after": "exits_after: 1s", "exit_code": "exit_code: 3", "lines": "lines: [started]",
                    "reason": "reason: OOMKilled", "pull_error": "pull_error: true",
                    "ignores_stop": "ignores_stop: true"}


@dataclass(frozen=True)
class Target:
    name: str = LOCAL
    kind: TargetKind = "local"
    context: str | None = None  # a kubeconfig context (None: the current one)
    namespace: str | None = None  # None: one namespace per project, named after it
    registry: str | None = None  # where images are pushed (kubernetes targets)
    insecure_registry: bool = False  # push over plain HTTP (a registry on 127.0.0.1, as in the tests)
    # fake targets: how containers behave, by start command or image (see FakeCluster.behave)
    behaviours: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    def store_key(self, project: str) -> str:
        """The name the daemon stores a project under: its own name locally, `project@target` elsewhere (so
        one project can run locally and on a cluster, each with its releases, scale and events)."""
        return project if self.is_local else f"{project}@{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "context": self.context, "namespace": self.namespace,
                "registry": self.registry, "insecure_registry": self.insecure_registry,
                "behaviours": {k: dict(v) for k, v in self.behaviours.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        return cls(name=data["name"], kind=data["kind"], context=data.get("context"),
                   namespace=data.get("namespace"), registry=data.get("registry"),
                   insecure_registry=bool(data.get("insecure_registry")),
                   behaviours=dict(data.get("behaviours") or {}))

    def describe(self) -> str:
        if self.is_local:
            return "local"
        parts = [f"{self.name} ({self.kind}"]
        if self.context:
            parts.append(f", context {self.context}")
        if self.namespace:
            parts.append(f", namespace {self.namespace}")
        return "".join(parts) + ")"


def check_target_name(value: str, *, where: str) -> str:
    if _TARGET_NAME.fullmatch(value):
        return value
    raise UserError(f"{where}: {value[:60]!r} is not a target name: 1-40 lowercase letters, digits and '-', "
                    f"starting with a letter (e.g. --target prod)")


def split_key(key: str) -> tuple[str, str]:
    """`acme@prod` -> ("acme", "prod"); `acme` -> ("acme", "local")."""
    project, _, target = key.partition("@")
    return project, target or LOCAL


def read_targets(raw: object, *, at: Any) -> dict[str, Target]:
    """`targets:` of stackblaze.yaml; `at(path, key=False)` names a place in the file (Document.at)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail(at("targets"), f"{show(raw)} is not a mapping (e.g. targets: {{prod: {{kind: kubernetes}}}})")
    found: dict[str, Target] = {}
    for name, value in raw.items():
        path = f"targets.{name}"
        if not isinstance(name, str) or not _TARGET_NAME.fullmatch(name) or name == LOCAL:
            rule = "'local' is the built-in target" if name == LOCAL else (
                "use 1-40 lowercase letters, digits and '-', starting with a letter")
            raise fail(at(path, key=True), f"{show(name)} is not a target name: {rule} (e.g. targets: {{prod: ...}})")
        if not isinstance(value, dict):
            raise fail(at(path), f"{show(value)} is not a mapping (e.g. {name}: {{kind: kubernetes}})")
        for key in value:
            if key not in TARGET_FIELDS:
                guess = did_you_mean(key, TARGET_FIELDS)
                hint = f"did you mean {guess}?" if guess else "known fields: " + ", ".join(TARGET_FIELDS)
                raise fail(at(f"{path}.{key}", key=True), f"unknown field ({hint})")
        kind = value.get("kind")
        if kind not in ("kubernetes", "fake"):
            raise fail(at(f"{path}.kind") if "kind" in value else at(path),
                       f"{show(kind) if 'kind' in value else 'missing'}: a target's kind is kubernetes or fake "
                       f"(e.g. kind: kubernetes)")
        strings = {}
        for key in ("context", "namespace", "registry"):
            if value.get(key) is not None:
                if not isinstance(value[key], str) or not value[key]:
                    raise fail(at(f"{path}.{key}"), f"{show(value[key])} is not a string (e.g. {TARGET_FIELDS[key]})")
                strings[key] = value[key]
        try:
            target = checked(Target(name=name, kind=kind, insecure_registry=value.get("insecure_registry") is True,
                                    behaviours=_read_behaviours(value.get("behaviours"), at=at, path=path),
                                    **strings))
        except UserError as exc:
            raise fail(at(path), str(exc).split(": ", 1)[-1]) from None
        found[name] = target
    return found


def _read_behaviours(raw: object, *, at: Any, path: str) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    where = f"{path}.behaviours"
    if not isinstance(raw, dict):
        raise fail(at(where), f"{show(raw)} is not a mapping (e.g. {BEHAVIOUR_FIELDS['exits_after']})")
    behaviours: dict[str, dict[str, Any]] = {}
    for command, spec in raw.items():
        here = f"{where}.{command}"
        if not isinstance(spec, dict):
            raise fail(at(here), f"{show(spec)} is not a mapping (e.g. {{exits_after: 1s, exit_code: 3}})")
        behaviour: dict[str, Any] = {}
        for key, value in spec.items():
            if key not in BEHAVIOUR_FIELDS:
                raise fail(at(f"{here}.{key}", key=True), "unknown field (known: " + ", ".join(BEHAVIOUR_FIELDS) + ")")
            if key == "exits_after":
                behaviour[key] = parse_duration(value, where=at(f"{here}.{key}"))
            elif key == "exit_code" and isinstance(value, int) and not isinstance(value, bool):
                behaviour[key] = value
            elif key == "lines" and isinstance(value, list) and all(isinstance(v, str) for v in value):
                behaviour[key] = list(value)
            elif (key == "reason" and isinstance(value, str)) or (
                    key in ("pull_error", "ignores_stop") and isinstance(value, bool)):
                behaviour[key] = value
            else:
                raise fail(at(f"{here}.{key}"), f"{show(value)} is not valid here (e.g. {BEHAVIOUR_FIELDS[key]})")
        behaviours[str(command)] = behaviour
    return behaviours


def checked(target: Target) -> Target:
    """A target whose fields a cluster will take: a DNS-1123 namespace, a registry without scheme or tag."""
    if target.namespace is not None and not _DNS_LABEL.fullmatch(target.namespace):
        raise UserError(f"namespace: {target.namespace!r} is not a DNS-1123 label: lowercase letters, digits and "
                        f"'-', at most 63, starting and ending alphanumeric (e.g. namespace: my-app)")
    if target.registry is not None and not _REGISTRY.fullmatch(target.registry):
        raise UserError(f"registry: {target.registry!r} is not a registry address: host[:port][/path], without "
                        f"https:// or a tag (e.g. registry: 127.0.0.1:5000/acme)")
    if target.kind == "kubernetes" and target.registry is None:
        raise UserError(f"target {target.name}: a kubernetes target needs a registry to push images to "
                        f"(e.g. registry: registry.example.com/acme, or --registry)")
    return target


def resolve_target(targets: Mapping[str, Target], name: str | None, *, context: str | None = None,
                   namespace: str | None = None, registry: str | None = None) -> Target:
    """The target a command acts on: `name` from the spec's targets (default: local), with the flags over it.
    Flags without --target name a target of their own: kubernetes, called after its context."""
    overrides: dict[str, str] = {k: v for k, v in (("context", context), ("namespace", namespace),
                                                   ("registry", registry)) if v is not None}
    if name is None or name == LOCAL:
        if not overrides:
            return Target()
        if name == LOCAL:
            raise UserError("--target local: --context, --namespace and --registry apply to a kubernetes target "
                            "(drop them, or name one: --target prod)")
        label = re.sub(r"[^a-z0-9-]+", "-", (context or "kubernetes").lower()).strip("-")[:40] or "kubernetes"
        if not label[0].isalpha():
            label = f"k-{label}"[:40]
        return checked(Target(name=label, kind="kubernetes", context=context, namespace=namespace,
                              registry=registry))
    if name not in targets:
        known = ", ".join(["local", *targets])
        raise UserError(f"--target: {name!r} is not a target of this project (targets: {known}; "
                        f"add it under targets: in stackblaze.yaml)")
    base = targets[name]
    return checked(Target(**{**base.__dict__, **overrides}))
