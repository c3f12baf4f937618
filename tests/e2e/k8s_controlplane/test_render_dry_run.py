"""Every manifest `stackblaze render k8s` makes is one the real API server accepts: a schema check
(kubernetes-validate, strict) cannot see what the server's validation and admission refuse, so each one is
also sent as a server-side apply and as a create, both with dryRun=All and strict field validation (an
unknown or duplicate field is refused, not dropped).

Real: the CLI's rendering and the API server (validation, defaulting, admission, server-side apply). Nothing
is stored (dry run), so no controller or kwok is involved.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.integration.conftest import Stackblaze, write_project
from tests.k8s.controlplane import ControlPlane

APPLY = "application/apply-patch+yaml"
SCHEMA = "1.35.0"  # the newest kubernetes-validate knows here; the server is tests/k8s/controlplane's release
LONG_PROJECT = "p" * 20 + "-long-project-name-1"  # 40: the longest name a spec takes
LONG_SERVICE = "a-service-with-the-longest-name-allowed"  # 39

SPECS = {
    "env at both levels, rolling percentages": """
        project: shop
        env: {DATABASE_URL: "postgres://db/shop", ZIP: "007", ENABLED: "yes", EMPTY: ""}
        services:
          - name: email
            start: python -m worker --queue email
            replicas: 3
            env: {QUEUE: email, lower_case_key: "x", ZIP: "008"}
            rolling: {max_surge: 25%, max_unavailable: 50%}
            min_ready: 2.5s
            progress_deadline: 3s
            shutdown_grace: 0.5s
          - name: reports
            start: ./reports --all
            rolling: {max_surge: 0%, max_unavailable: 100%}
    """,
    "recreate, no env, zero replicas, a stop signal": """
        project: batch
        services:
          - name: nightly
            start: "sh -c 'exec ./nightly'"
            strategy: recreate
            replicas: 0
            stop_signal: SIGINT
            min_ready: 0s
            progress_deadline: 1h
            shutdown_grace: 10m
          - name: mover
            start: ./mover
            rolling: {max_surge: 100%, max_unavailable: 0}
            replicas: 1000
    """,
    "long names": f"""
        project: {LONG_PROJECT}
        env: {{A: b}}
        services:
          - name: {LONG_SERVICE}
            start: ./run
          - name: {LONG_SERVICE[:-1]}x
            start: ./run
            strategy: recreate
    """,
}


def render(sb: Stackblaze, project: Path, *args: str) -> list[dict[str, Any]]:
    manifests: list[dict[str, Any]] = sb.run("render", "k8s", str(project), "--json", *args).json()["manifests"]
    return manifests


def dry_runs(api: Any, manifest: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """The server-side apply (manager stackblaze, force, as the engine applies) and the create of one
    manifest, both dry runs with strict field validation."""
    core: Any = kubernetes.client.CoreV1Api(api)  # Any: the generated signatures want models, we send dicts
    apps: Any = kubernetes.client.AppsV1Api(api)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace")
    common = {"dry_run": "All", "field_validation": "Strict"}
    apply = {**common, "field_manager": "stackblaze", "force": True, "_content_type": APPLY}
    if manifest["kind"] == "Namespace":
        return {"apply": lambda: core.patch_namespace(name, manifest, **apply),
                "create": lambda: core.create_namespace(manifest, **common)}
    if manifest["kind"] == "Secret":
        return {"apply": lambda: core.patch_namespaced_secret(name, namespace, manifest, **apply),
                "create": lambda: core.create_namespaced_secret(namespace, manifest, **common)}
    assert manifest["kind"] == "Deployment", manifest["kind"]
    return {"apply": lambda: apps.patch_namespaced_deployment(name, namespace, manifest, **apply),
            "create": lambda: apps.create_namespaced_deployment(namespace, manifest, **common)}


@pytest.mark.parametrize("spec", list(SPECS), ids=list(SPECS))
def test_every_rendered_manifest_is_accepted_by_the_api_server(spec: str, sb: Stackblaze,
                                                               control_plane: ControlPlane, namespace: str,
                                                               tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", textwrap.dedent(SPECS[spec]).lstrip() + (
        f"targets:\n  cp: {{kind: kubernetes, namespace: {namespace}, registry: 127.0.0.1:5000/acme}}\n"))
    # The project's own Namespace (rendered when none is given), then everything into the test's namespace,
    # as `--namespace` and as the target's (with its registry's images).
    own = render(sb, project)
    assert own[0]["kind"] == "Namespace"
    manifests = [own[0], *render(sb, project, "--namespace", namespace), *render(sb, project, "--target", "cp"),
                 *render(sb, project, "--namespace", namespace, "--image", "registry.local:5000/{project}/{service}@"
                         "sha256:" + "0" * 64)]
    assert {m["kind"] for m in manifests} >= {"Namespace", "Deployment"}
    api = control_plane.api_client()
    refused = []
    for manifest in manifests:
        kubernetes_validate.validate(manifest, SCHEMA, strict=True)
        for how, call in dry_runs(api, manifest).items():
            try:
                answer = api.sanitize_for_serialization(call())
            except kubernetes.client.ApiException as error:
                refused.append(f"{how} {manifest['kind']} {manifest['metadata']['name']}: {error.status} "
                               f"{json.loads(error.body or '{}').get('message')}")
                continue
            # Accepted as sent: nothing we set was dropped or changed by the server.
            assert manifest["metadata"]["labels"].items() <= answer["metadata"]["labels"].items()
            if manifest["kind"] == "Deployment":
                sent, kept = manifest["spec"], answer["spec"]
                fields = ("replicas", "strategy", "minReadySeconds", "progressDeadlineSeconds")
                # The API leaves out what is 0 (minReadySeconds: 0, replicas: 0).
                assert [kept.get(key, 0) for key in fields] == [sent[key] for key in fields]
                assert kept["template"]["spec"]["containers"][0]["args"] == sent["template"]["spec"][
                    "containers"][0]["args"]
    assert refused == []
