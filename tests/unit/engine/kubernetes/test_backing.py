"""Backing services on Kubernetes (engine/kubernetes/backing.py, backing_services.py): the Service and StatefulSet
are valid (strict schemas, 1.31..1.35) and keep our rules (ClusterIP only, one replica, a claim, a probe, no
password in argv), `render k8s` expands references as the local engine does, and the engine against the
in-package fake cluster applies the Service before the workers, points their hostAliases at its cluster IP,
leaves it alone on a worker redeploy and follows a re-created Service.

The engine tests use the fake cluster (no cluster or kubelet runs here: fake.py and fake_stateful.py say what
they do not model); tests/e2e/k8s_controlplane/test_backing.py checks the same against a real API server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stackblaze.engine.kubernetes.backing import backing_for, with_host_aliases
from stackblaze.engine.kubernetes.manifests import deployment_for, render_manifests
from stackblaze.engine.protocol import Desired
from stackblaze.errors import UserError
from stackblaze.spec import Project, load_project
from stackblaze.spec.backing import service_variables
from tests.unit.engine.kubernetes.test_engine import KEY, World, run, want

VERSIONS = ("1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0")
PASSWORD = "pw-7f3a9c1e-never-in-argv"


def load(tmp_path: Path, spec: str) -> Project:
    (tmp_path / "stackblaze.yaml").write_text(textwrap.dedent(spec), encoding="utf-8")
    return load_project(tmp_path)


SHOP = """\
    project: shop
    env: {REDIS_URL: "${{cache.REDIS_URL}}", QUEUE_HOST: "${{ queue.HOST }}:${{queue.PORT}}"}
    services:
      - name: worker
        start: python worker.py
        env: {DATABASE_URL: "${{db.DATABASE_URL}}"}
      - name: cache
        type: redis
      - name: queue
        type: redis
        auth: password
      - name: db
        type: postgres
        disk: {size: 5Gi}
        shutdown_grace: 12s
"""


def backing(service: str = "cache", kind: str = "redis", *, password: str | None = None, replicas: int = 1,
            disk: str = "1Gi") -> Desired:
    """A backing service's Desired as the control plane makes it for a cluster target."""
    return Desired(project=KEY, service=service, replicas=replicas, release=1, cwd="", start=kind,
                   env={"PASSWORD": password} if password else {}, stop_signal=15 if kind == "redis" else 2,
                   shutdown_grace=30.0, strategy="recreate", config=f"{service}-config", min_ready=0.0,
                   app="acme", namespace="acme", kind=kind,
                   backing={"port": 6379 if kind == "redis" else 5432, "auth": "password" if password else "none",
                            "disk_size": disk})


def worker(release: int = 1, internal: tuple[str, ...] = ("cache",)) -> Desired:
    return replace(want(release=release, env={"REDIS_URL": service_variables("redis", "cache")["REDIS_URL"]}),
                   internal=internal)


def by_kind(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


# -- manifests ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_backing_manifests_and_a_worker_with_host_aliases_are_valid_kubernetes(version: str, tmp_path: Path) -> None:
    engine_made = [m for desired in (backing(), backing("db", "postgres", password=PASSWORD),
                                     backing("queue", password=PASSWORD, replicas=0))
                   for objects in [backing_for(desired)]
                   for m in (objects.secret, objects.service, objects.stateful_set) if m is not None]
    aliased = with_host_aliases(deployment_for(worker()), {"cache": "10.96.0.10", "db": "10.96.0.11"})
    for manifest in [*render_manifests(load(tmp_path, SHOP.replace('"${{db.DATABASE_URL}}"', "x"))),
                     *engine_made, aliased]:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_a_backing_service_is_a_cluster_ip_service_and_one_stateful_replica_with_its_claim(tmp_path: Path) -> None:
    objects = by_kind(render_manifests(load(tmp_path, SHOP.replace('"${{db.DATABASE_URL}}"', "x"))))
    for name, port in (("shop-cache", 6379), ("shop-queue", 6379), ("shop-db", 5432)):
        service, sts = objects[("Service", name)], objects[("StatefulSet", name)]
        assert service["spec"]["type"] == "ClusterIP"
        assert [(p["port"], p.get("nodePort")) for p in service["spec"]["ports"]] == [(port, None)]
        assert service["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
        spec = sts["spec"]
        assert (spec["replicas"], spec["serviceName"]) == (1, name)
        [claim] = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"] == ("5Gi" if name == "shop-db" else "1Gi")
        pod = spec["template"]["spec"]
        [container] = pod["containers"]
        assert container["readinessProbe"]["exec"]["command"]
        assert [m["name"] for m in container["volumeMounts"]] == ["data"]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
        assert pod["terminationGracePeriodSeconds"] == (12 if name == "shop-db" else 30)
    assert not any(kind in ("Ingress", "Deployment") and name != "shop-worker" for kind, name in objects)
    redis = objects[("StatefulSet", "shop-cache")]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert redis[:1] == ["redis-server"] and "--appendonly" in redis and "everysec" in redis
    postgres = objects[("StatefulSet", "shop-db")]["spec"]["template"]["spec"]["containers"][0]
    assert postgres["lifecycle"]["preStop"]["exec"]["command"] == ["sh", "-c", "kill -INT 1"]
    env = {e["name"]: e.get("value") for e in postgres["env"]}
    assert env["PGDATA"].startswith("/var/lib/postgresql/data/") and env["POSTGRES_HOST_AUTH_METHOD"] == "trust"


def test_a_password_is_in_its_secret_only_never_in_a_pod_spec_or_argv() -> None:
    for desired in (backing("queue", password=PASSWORD), backing("db", "postgres", password=PASSWORD)):
        objects = backing_for(desired)
        assert objects.secret is not None and objects.secret["stringData"] == {"PASSWORD": PASSWORD}
        assert PASSWORD not in json.dumps([objects.service, objects.stateful_set])
        [container] = objects.stateful_set["spec"]["template"]["spec"]["containers"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
        assert refs and all(ref == {"name": f"acme-{desired.service}-env", "key": "PASSWORD"} for ref in refs.values())
    [redis] = backing_for(backing("queue", password=PASSWORD)).stateful_set["spec"]["template"]["spec"]["containers"]
    assert redis["command"][:2] == ["sh", "-c"] and '--requirepass "$REDIS_PASSWORD"' in redis["command"][2]
    assert "--protected-mode" not in redis["command"][2]


def test_render_expands_references_byte_for_byte_as_the_local_engine(tmp_path: Path) -> None:
    """K5: the worker's REDIS_URL in its Secret is the string spec/backing.service_variables gives the local
    engine; a reference to a password render cannot know is refused in one line naming it."""
    spec = SHOP.replace('"${{db.DATABASE_URL}}"', '"${{db.DATABASE_URL}}/x"')
    objects = by_kind(render_manifests(load(tmp_path, spec)))
    values = objects[("Secret", "shop-worker-env")]["stringData"]
    assert values["REDIS_URL"] == service_variables("redis", "cache")["REDIS_URL"] == "redis://cache.internal:6379"
    assert values["DATABASE_URL"] == service_variables("postgres", "db")["DATABASE_URL"] + "/x"
    assert values["QUEUE_HOST"] == "queue.internal:6379"
    assert "hostAliases" not in objects[("Deployment", "shop-worker")]["spec"]["template"]["spec"]
    secret = SHOP.replace('"${{db.DATABASE_URL}}"', '"${{queue.REDIS_URL}}"')
    with pytest.raises(UserError) as refused:
        render_manifests(load(tmp_path, secret))
    assert str(refused.value).startswith(
        "render k8s: env DATABASE_URL: ${{queue.REDIS_URL}} carries queue's password")
    assert "\n" not in str(refused.value)


# -- the engine on the fake cluster --------------------------------------------------------------------------


def aliases(w: World, name: str = "acme-worker") -> list[dict[str, Any]]:
    spec = w.cluster.get(name, "acme")["spec"]["template"]["spec"]
    return spec.get("hostAliases", [])  # type: ignore[no-any-return]


def test_the_service_comes_before_the_workers_and_their_host_aliases_carry_its_cluster_ip(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(backing(password=PASSWORD))
        await w.deploy(worker())
        await w.clock.advance(1)
        assert w.api.calls == ["apply Namespace", "apply Secret", "apply Service", "apply StatefulSet",
                               "apply Secret", "apply Deployment"]
        service = w.cluster.stateful.service("acme-cache", "acme")
        assert service is not None and service["spec"]["clusterIP"].startswith("10.")
        assert aliases(w) == [{"ip": service["spec"]["clusterIP"], "hostnames": ["cache.internal"]}]
        # ps shows the StatefulSet's pod as it shows a worker's
        [row] = w.ps("cache")
        assert (row["pod"], row["state"], row["replica"]) == ("acme-cache-0", "running", 1)
        assert w.cluster.secrets[("acme", "acme-cache-env")]["stringData"] == {"PASSWORD": PASSWORD}

    run(body, tmp_path)


def test_a_worker_redeploy_leaves_the_stateful_set_and_the_service_untouched(tmp_path: Path) -> None:
    """K3: a deploy reconciles every service; the backing one, unchanged, is not applied again."""
    async def body(w: World) -> None:
        await w.deploy(backing())
        await w.deploy(worker())
        await w.clock.advance(1)
        before = w.cluster.stateful.stateful_set("acme-cache", "acme"), w.cluster.stateful.service("acme-cache",
                                                                                                  "acme")
        pod = w.cluster.pod("acme-cache-0", "acme")
        calls = len(w.api.calls)
        for release in (2, 3):
            await w.deploy(backing())
            await w.deploy(worker(release))
            await w.clock.advance(2)
        after = w.cluster.stateful.stateful_set("acme-cache", "acme"), w.cluster.stateful.service("acme-cache",
                                                                                                 "acme")
        assert before[0] is not None and after[0] is not None and before[1] is not None and after[1] is not None
        assert after[0]["metadata"]["generation"] == before[0]["metadata"]["generation"] == 1
        assert after[1]["metadata"]["resourceVersion"] == before[1]["metadata"]["resourceVersion"]
        assert w.cluster.pod("acme-cache-0", "acme") is pod and pod.restart_count == 0
        assert [c for c in w.api.calls[calls:] if c in ("apply Service", "apply StatefulSet")] == []
        assert {p["metadata"]["labels"]["stackblaze.dev/release"] for p in w.cluster.pods("acme", {
            "app.kubernetes.io/name": "worker"})} == {"3"}

    run(body, tmp_path)


def test_a_re_created_service_re_points_the_workers_at_its_new_cluster_ip(tmp_path: Path) -> None:
    """K4: the Service deleted behind the engine's back is applied again at the next sync (a new cluster IP),
    and the workers roll to hostAliases with the new IP."""
    async def body(w: World) -> None:
        await w.deploy(backing())
        await w.deploy(worker())
        await w.clock.advance(1)
        old = aliases(w)[0]["ip"]
        assert w.cluster.delete_object("Service", "acme-cache", "acme")
        await w.clock.advance(3)
        service = w.cluster.stateful.service("acme-cache", "acme")
        assert service is not None and service["spec"]["clusterIP"] != old
        assert aliases(w) == [{"ip": service["spec"]["clusterIP"], "hostnames": ["cache.internal"]}]
        assert [e["message"] for e in w.hooks.kinds("recreate")] == [
            "cache: its Service acme-cache was deleted from namespace acme: applied again"]
        await w.clock.advance(5)
        pods = w.cluster.pods("acme", {"app.kubernetes.io/name": "worker"})
        assert [p["spec"]["hostAliases"][0]["ip"] for p in pods] == [service["spec"]["clusterIP"]]

    run(body, tmp_path)


def test_a_worker_applied_before_its_service_exists_gets_the_alias_when_it_appears(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(worker())
        await w.clock.advance(1)
        assert aliases(w) == []
        [pending] = w.hooks.kinds("internal-pending")
        assert "cache.internal left out of its hostAliases: Service acme-cache is not in namespace acme" in \
            pending["message"]
        await w.deploy(backing())
        await w.clock.advance(1)
        service = w.cluster.stateful.service("acme-cache", "acme")
        assert service is not None
        assert aliases(w) == [{"ip": service["spec"]["clusterIP"], "hostnames": ["cache.internal"]}]
        assert len(w.hooks.kinds("internal-pending")) == 1

    run(body, tmp_path)


def test_a_removed_backing_service_loses_its_service_and_stateful_set_and_is_not_re_created(tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.deploy(backing(password=PASSWORD))
        await w.deploy(worker(internal=()))
        await w.clock.advance(1)
        del w.hooks.desired[(KEY, "cache")]
        await w.engine.reconcile(KEY, "cache")
        await w.clock.advance(3)
        assert w.cluster.stateful.service("acme-cache", "acme") is None
        assert w.cluster.stateful.stateful_set("acme-cache", "acme") is None
        assert ("acme", "acme-cache-env") not in w.cluster.secrets
        assert w.hooks.kinds("recreate") == []
        assert w.cluster.get("acme-worker", "acme")["metadata"]["name"] == "acme-worker"

    run(body, tmp_path)


def test_render_k8s_says_on_stderr_what_it_cannot_know_offline(tmp_path: Path) -> None:
    """The real CLI: the YAML on stdout (Services and StatefulSets before the workers), and on stderr a note
    that the workers have no hostAliases and how to create the auth: password service's Secret."""
    (tmp_path / "stackblaze.yaml").write_text(textwrap.dedent(SHOP).replace('"${{db.DATABASE_URL}}"', "x"),
                                              encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "stackblaze.cli", "render", "k8s", "--namespace", "jobs"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "STACKBLAZE_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    kinds = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(result.stdout)]
    assert kinds.index(("Service", "shop-cache")) < kinds.index(("Deployment", "shop-worker"))
    assert result.stderr.splitlines() == [
        "note: the workers are rendered without hostAliases for cache.internal, queue.internal, db.internal: a "
        "Service's cluster IP is known only once it exists (deploy --target fills them in from the live Service; "
        "or reach shop-cache, shop-queue, shop-db by the Service's cluster DNS name)",
        "note: queue has auth: password: create its Secret before applying: kubectl create secret generic "
        "shop-queue-env -n jobs --from-literal=PASSWORD=\"$(openssl rand -hex 24)\""]


def test_a_new_disk_size_is_refused_with_the_way_out(tmp_path: Path) -> None:
    """The API server refuses a change of volumeClaimTemplates (the fake as the real one): one line naming
    the StatefulSet and how to replace it keeping the data."""
    async def body(w: World) -> None:
        await w.deploy(backing())
        with pytest.raises(UserError) as refused:
            await w.deploy(replace(backing(disk="5Gi"), config="other"))
        assert str(refused.value).startswith("service cache: its StatefulSet acme-cache cannot take this change")
        assert "kubectl delete statefulset acme-cache -n acme --cascade=orphan" in str(refused.value)

    run(body, tmp_path)
