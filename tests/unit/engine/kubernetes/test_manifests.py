"""engine/kubernetes/manifests.py: every rendered object is valid Kubernetes (strict schemas, 1.31..1.35)
and keeps our own rules: DNS-1123 names, selectors that select their pods, no Service or Ingress, env
names Kubernetes accepts, and secret values nowhere but the Secret."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from stackblaze.engine.kubernetes.manifests import object_name, render_manifests
from stackblaze.errors import UserError
from stackblaze.spec import Project, load_project
from stackblaze.spec.model import Service
from stackblaze.spec.rollout import Rolling

VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")
SECRET = "sk_live_9f8e7d6c5b4a-not-anywhere-else"
DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a C identifier: what every shell and runtime can read
LONG = "a" * 38 + "-x"  # 40 characters, the longest name the spec allows: project-service is 81


def load(tmp_path: Path, spec: str) -> Project:
    (tmp_path / "stackblaze.yaml").write_text(textwrap.dedent(spec), encoding="utf-8")
    return load_project(tmp_path)


@pytest.fixture
def shop(tmp_path: Path) -> Project:
    """Both strategies, a percentage and a whole number, a shell command, env at both levels, a service
    without env, and the longest names the spec allows."""
    return load(tmp_path, f"""\
        project: shop
        env:
          STRIPE_KEY: {SECRET}
          LOG_LEVEL: info
        services:
          - name: email
            start: python -m worker --queue email > /dev/null
            replicas: 4
            shutdown_grace: 2.5s
            rolling: {{max_surge: 25%, max_unavailable: 50%}}
            min_ready: 5s
            progress_deadline: 2m
            env: {{QUEUE: email, _private: "1"}}
          - name: reports
            start: ./reports --daily
            strategy: recreate
            stop_signal: SIGINT
          - name: {LONG}
            start: sleep infinity
            rolling: {{max_surge: 0, max_unavailable: 2}}
        """)


def objects(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def deployment(manifests: list[dict[str, Any]], service: str) -> dict[str, Any]:
    [found] = [m for m in objects(manifests, "Deployment")
               if m["metadata"]["labels"]["app.kubernetes.io/name"] == service]
    return found


def container(manifests: list[dict[str, Any]], service: str) -> dict[str, Any]:
    [found] = deployment(manifests, service)["spec"]["template"]["spec"]["containers"]
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("namespace", [None, "jobs"])
def test_every_manifest_validates_strictly(shop: Project, version: str, namespace: str | None) -> None:
    manifests = render_manifests(shop, namespace=namespace)
    assert [m["kind"] for m in manifests].count("Deployment") == 3
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_strict_validation_rejects_what_kubernetes_would(shop: Project) -> None:
    """The check above can fail: a misspelt field, or a string where an int belongs, is an error."""
    manifest = deployment(render_manifests(shop), "email")
    manifest["spec"]["minReadySecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.35.0", strict=True)
    manifest = deployment(render_manifests(shop), "email")
    manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.35.0", strict=True)


def test_names_are_dns_1123_and_long_names_are_cut_without_colliding(shop: Project) -> None:
    manifests = render_manifests(shop)
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        assert DNS_SUBDOMAIN.fullmatch(name), name
        if manifest["kind"] in ("Namespace", "Deployment"):
            assert DNS_LABEL.fullmatch(name), name
        for value in manifest["metadata"].get("labels", {}).values():
            assert len(value) <= 63 and DNS_LABEL.fullmatch(value), value
    assert deployment(manifests, "email")["metadata"]["name"] == "shop-email"
    longest = Project(name=LONG, services=(Service(name=LONG, start="./w"),), source=Path("."))
    [_, long] = render_manifests(longest)
    name = long["metadata"]["name"]
    assert len(name) == 63 and DNS_LABEL.fullmatch(name) and name.startswith(f"{LONG}-{LONG}"[:50])
    assert long["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] == name
    kubernetes_validate.validate(long, VERSIONS[-1], strict=True)
    other = object_name(LONG, LONG[:-1] + "y")  # the same first 54 characters: the hash tells them apart
    assert other != name and len(other) == 63


def test_each_deployment_selects_its_own_pods_and_no_other(shop: Project) -> None:
    deployments = objects(render_manifests(shop), "Deployment")
    for manifest in deployments:
        selector = manifest["spec"]["selector"]["matchLabels"]
        template = manifest["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= template.items()
        for other in deployments:
            if other is not manifest:
                assert not selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
        assert template["app.kubernetes.io/managed-by"] == "stackblaze"
        assert template["app.kubernetes.io/part-of"] == "shop"
        assert template["app.kubernetes.io/component"] == "worker"


def test_no_service_or_ingress_ever(shop: Project) -> None:
    kinds = {m["kind"] for m in render_manifests(shop)} | {m["kind"] for m in render_manifests(shop, namespace="x")}
    assert kinds == {"Namespace", "Secret", "Deployment"}


def test_env_names_are_valid_and_ours_come_first(shop: Project) -> None:
    manifests = render_manifests(shop, release=7)
    for secret in objects(manifests, "Secret"):
        assert all(ENV_NAME.fullmatch(key) for key in secret["stringData"])
    email = container(manifests, "email")
    assert all(ENV_NAME.fullmatch(item["name"]) for item in email["env"])
    assert {item["name"]: item["value"] for item in email["env"]} == {
        "STACKBLAZE_SERVICE": "email", "STACKBLAZE_RELEASE": "7", "STACKBLAZE_SHUTDOWN_GRACE_SECONDS": "2.5",
        "PYTHONUNBUFFERED": "1"}


def test_a_secret_value_is_only_in_the_secret(shop: Project) -> None:
    manifests = render_manifests(shop)
    holders = [m for m in manifests if SECRET in json.dumps(m)]
    assert {m["kind"] for m in holders} == {"Secret"}
    assert len(holders) == 3  # each service's Secret has the project's env
    email = next(m for m in holders if m["metadata"]["name"] == "shop-email-env")
    # The service's env wins over the project's, as on the local engine.
    assert email["stringData"] == {"LOG_LEVEL": "info", "QUEUE": "email", "STRIPE_KEY": SECRET, "_private": "1"}
    assert container(manifests, "email")["envFrom"] == [{"secretRef": {"name": "shop-email-env"}}]


def test_a_service_without_env_gets_no_secret(tmp_path: Path) -> None:
    manifests = render_manifests(load(tmp_path, "project: bare\nservices:\n  - {name: w, start: ./w}\n"))
    assert [m["kind"] for m in manifests] == ["Namespace", "Deployment"]
    assert "envFrom" not in container(manifests, "w")


def test_rolling_with_percentages_and_whole_numbers_and_recreate(shop: Project) -> None:
    manifests = render_manifests(shop)
    email = deployment(manifests, "email")["spec"]
    assert email["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "50%"}}
    assert (email["replicas"], email["minReadySeconds"], email["progressDeadlineSeconds"]) == (4, 5, 120)
    assert deployment(manifests, LONG)["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 2}
    reports = deployment(manifests, "reports")["spec"]
    assert reports["strategy"] == {"type": "Recreate"}
    assert (reports["minReadySeconds"], reports["progressDeadlineSeconds"]) == (10, 600)


def test_fractional_seconds_round_up_and_the_deadline_stays_past_min_ready() -> None:
    """Kubernetes takes whole seconds and rejects progressDeadlineSeconds <= minReadySeconds."""
    service = Service(name="w", start="./w", min_ready=10.2, progress_deadline=10.5, shutdown_grace=0.5,
                      rolling=Rolling(max_surge="100%", max_unavailable="0%"))
    project = Project(name="p", services=(service,), source=Path("."))
    [_, manifest] = render_manifests(project)
    assert (manifest["spec"]["minReadySeconds"], manifest["spec"]["progressDeadlineSeconds"]) == (11, 12)
    assert manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 1
    for version in VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_command_is_the_images_exec_form(shop: Project) -> None:
    manifests = render_manifests(shop)
    assert container(manifests, "email")["args"] == ["/bin/sh", "-c", "exec python -m worker --queue email > /dev/null"]
    assert container(manifests, "reports")["args"] == ["./reports", "--daily"]
    assert "command" not in container(manifests, "reports")  # the image's ENTRYPOINT (an --init) stays


def test_pods_run_as_the_images_non_root_user_and_stop_with_the_grace(shop: Project) -> None:
    manifest = deployment(render_manifests(shop), "email")["spec"]["template"]["spec"]
    assert manifest["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                           "seccompProfile": {"type": "RuntimeDefault"}}
    [box] = manifest["containers"]
    assert box["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert box["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert manifest["terminationGracePeriodSeconds"] == 3  # 2.5s, rounded up


def test_images_and_namespaces(shop: Project) -> None:
    default = render_manifests(shop)
    assert default[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {
        "app.kubernetes.io/part-of": "shop", "app.kubernetes.io/managed-by": "stackblaze"}}}
    assert {m["metadata"]["namespace"] for m in default[1:]} == {"shop"}
    assert container(default, "email")["image"] == "shop-email:latest"
    given = render_manifests(shop, namespace="jobs", image="registry.local/{service}:v3")
    assert "Namespace" not in {m["kind"] for m in given}
    assert {m["metadata"]["namespace"] for m in given} == {"jobs"}
    assert container(given, "reports")["image"] == "registry.local/reports:v3"
    with pytest.raises(UserError, match=r"--namespace: 'Jobs_1' is not a DNS-1123 label.*e\.g\. --namespace"):
        render_manifests(shop, namespace="Jobs_1")


@pytest.mark.parametrize("version", VERSIONS)
def test_what_the_engine_applies_validates_and_keeps_the_secret_in_the_secret(version: str) -> None:
    """deployment_for / secret_for (what a deploy to a target applies, from the control plane's Desired)
    pass the same strict schemas and our checks: the selector selects the template, names are DNS-1123,
    the image is the pushed digest, and the env's values are only in the Secret."""
    from stackblaze.engine.kubernetes.manifests import deployment_for, secret_for
    from stackblaze.engine.protocol import Desired

    image = "127.0.0.1:5000/acme/shop-email@sha256:" + "a" * 64
    desired = Desired(
        project="shop@prod", service="email", replicas=3, release=7, cwd="", start="python -m worker --queue email",
        env={"STRIPE_KEY": SECRET}, stop_signal=15, shutdown_grace=12.5,
        strategy="rolling", config="0123456789abcdef", min_ready=5.0, progress_deadline=120.0,
        rolling=Rolling(max_surge="25%", max_unavailable=0), app="shop", namespace="shop-prod", image=image)
    deployment_ = deployment_for(desired)
    secret = secret_for(desired)
    assert secret is not None
    for manifest in (deployment_, secret):
        kubernetes_validate.validate(manifest, version, strict=True)
        assert DNS_LABEL.fullmatch(manifest["metadata"]["name"])
        assert manifest["metadata"]["namespace"] == "shop-prod"
    spec = deployment_["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    [container_] = spec["template"]["spec"]["containers"]
    assert container_["image"] == image
    assert container_["args"] == ["python", "-m", "worker", "--queue", "email"]
    assert (spec["replicas"], spec["minReadySeconds"], spec["progressDeadlineSeconds"]) == (3, 5, 120)
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 13
    assert SECRET not in json.dumps(deployment_)
    assert secret["stringData"]["STRIPE_KEY"] == SECRET
    assert all(ENV_NAME.fullmatch(entry["name"]) for entry in container_["env"])
