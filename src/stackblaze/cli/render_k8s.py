"""`stackblaze render k8s [PATH]`: the project as Kubernetes manifests, printed or written, `kubectl apply -f` ready."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stackblaze.cli.options import JsonOpt, examples, project_root
from stackblaze.errors import UserError

if TYPE_CHECKING:
    from stackblaze.spec.model import Project

app = typer.Typer(no_args_is_help=True, help="Render the project for another platform, deploying nothing.")


@app.command("k8s", epilog=examples("stackblaze render k8s | kubectl apply -f -",
                                    "stackblaze render k8s --namespace jobs --image 'registry.local/{service}:v3'",
                                    "stackblaze render k8s --out k8s/ && kubectl apply -f k8s/",
                                    "stackblaze render k8s --target prod   # its namespace and registry"))
def render_k8s(
    path: Annotated[Path | None, typer.Argument(
        help="Project directory (stackblaze.yaml or Procfile; default: the current directory's project).",
        show_default=False)] = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", "-n", help="An existing namespace to use (default: one named after the project, rendered too).",
        show_default=False)] = None,
    image: Annotated[str | None, typer.Option(
        "--image", help="Image per service; {project} and {service} are filled in "
                        "(default {project}-{service}:latest).",
        show_default=False)] = None,
    release: Annotated[int, typer.Option("--release", min=1, help="STACKBLAZE_RELEASE in the workers' env.")] = 1,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write one file per object into this directory instead of printing.",
        show_default=False)] = None,
    as_json: JsonOpt = False,
    target: Annotated[str | None, typer.Option(
        "--target", help="A target of stackblaze.yaml: its namespace, and images from its registry "
                               "({registry}/{project}-{service}:latest unless --image).", show_default=False)] = None,
) -> None:
    """Print a Deployment per worker, its env as a Secret and the project's Namespace, as multi-document YAML.

    No Service and no Ingress for workers: they take no traffic. A redis or postgres service is a ClusterIP
    Service and a one-replica StatefulSet with a volume claim."""
    from stackblaze.engine.autoscale.decide import kubernetes_notes
    from stackblaze.engine.kubernetes.manifests import DEFAULT_IMAGE, render_manifests
    from stackblaze.spec import load_project

    if image is not None and not image.strip():
        raise UserError("render k8s --image: is empty (e.g. --image 'registry.local/{project}-{service}:v1')")
    project = load_project(path or project_root())
    if target is not None:
        from stackblaze.spec.targets import resolve_target

        where = resolve_target(project.targets, target)
        namespace = namespace or where.namespace
        if image is None and where.registry:
            image = f"{where.registry}/{DEFAULT_IMAGE}"
    manifests = render_manifests(project, namespace=namespace, image=image or DEFAULT_IMAGE, release=release)
    for note in project.notes:
        _note(note)
    for note in backing_notes(project, namespace or project.name):
        _note(note)
    for note in queue_metrics_notes(manifests):
        _note(note)
    for note in kubernetes_notes(project):
        _note(note)
    for service in project.services:
        if service.stop_signal != "SIGTERM" and not service.is_backing:
            _note(f"{service.name} stops with {service.stop_signal}: on Kubernetes that is the image's STOPSIGNAL "
                  f"(stackblaze build --image sets it; another image must set it itself)")
    files = write_manifests(manifests, out) if out is not None else None
    if as_json:
        payload: dict[str, Any] = {"project": project.name, "manifests": manifests}
        if files is not None:
            payload["files"] = [str(file) for file in files]
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    elif files is not None:
        sys.stdout.write("".join(f"{file}\n" for file in files))
    else:
        sys.stdout.write(to_yaml(manifests))


def backing_notes(project: Project, namespace: str) -> list[str]:
    """What a rendered backing service lacks offline: the Service's cluster IP (so the workers' hostAliases)
    and a generated password."""
    from stackblaze.engine.kubernetes.manifests import object_name, secret_name

    backing = [service for service in project.services if service.is_backing]
    notes = []
    if backing and any(not service.is_backing for service in project.services):
        names = ", ".join(f"{service.name}.internal" for service in backing)
        services = ", ".join(object_name(project.name, service.name) for service in backing)
        notes.append(f"the workers are rendered without hostAliases for {names}: a Service's cluster IP is known "
                     f"only once it exists (deploy --target fills them in from the live Service; or reach "
                     f"{services} by the Service's cluster DNS name)")
    for service in backing:
        if service.auth == "password":
            notes.append(f"{service.name} has auth: password: create its Secret before applying: kubectl create "
                         f"secret generic {secret_name(project.name, service.name)} -n {namespace} "
                         f"--from-literal=PASSWORD=\"$(openssl rand -hex 24)\"")
    return notes


def queue_metrics_notes(manifests: list[dict[str, Any]]) -> list[str]:
    """The queue-metrics server's image is a name offline (a deploy builds and pushes it): how to make it."""
    from stackblaze.build.queue_metrics_image import how_to_publish
    from stackblaze.engine.kubernetes.queue_metrics import NAME

    return [how_to_publish(m["spec"]["template"]["spec"]["containers"][0]["image"]) for m in manifests
            if m["kind"] == "Deployment" and m["metadata"].get("labels", {}).get("app.kubernetes.io/name") == NAME]


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    import yaml

    # Key order kept as written (apiVersion, kind, metadata first), as people read and diff manifests.
    return yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True, default_flow_style=False)


def write_manifests(manifests: list[dict[str, Any]], out: Path) -> list[Path]:
    """One file per object, numbered so that `kubectl apply -f DIR` (which reads a directory's files in name
    order) creates the Namespace before what lives in it. Secrets are written readable by the owner only."""
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for index, manifest in enumerate(manifests):
            file = out / f"{index:02d}-{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"
            mode = 0o600 if manifest["kind"] == "Secret" else 0o644
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            os.fchmod(fd, mode)  # an existing file keeps its mode through O_CREAT: a Secret's must not
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(to_yaml([manifest]))
            written.append(file)
        stale = sorted(set(out.glob("*.yaml")) - set(written))
    except OSError as error:
        raise UserError(f"render k8s --out {out}: {error.strerror or error} (give a directory you can write)") from None
    for file in stale:
        _note(f"{file} was not written by this render: `kubectl apply -f {out}` would apply it too (remove it "
              f"if its service is gone)")
    return written


def _note(message: str) -> None:
    sys.stderr.write(f"note: {message}\n")
