"""`stackblaze render k8s`: the real CLI in a subprocess, with no daemon (rendering needs none)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

SPEC = """\
project: shop
env: {STRIPE_KEY: sk_live_only-in-the-secret, ENABLED: "yes", ZIP: "007", EMPTY: ""}
services:
  - {name: email, start: python -m worker, replicas: 2, stop_signal: SIGINT}
  - {name: reports, start: ./reports, strategy: recreate}
"""


def render(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "stackblaze.yaml").write_text(SPEC, encoding="utf-8")
    env = {**os.environ, "STACKBLAZE_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "stackblaze.cli", "render", "k8s", *args], cwd=tmp_path / "app",
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_prints_multi_document_yaml_that_kubectl_apply_takes(tmp_path: Path) -> None:
    result = render(tmp_path)
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Namespace", "shop"), ("Secret", "shop-email-env"), ("Deployment", "shop-email"),
        ("Secret", "shop-reports-env"), ("Deployment", "shop-reports")]
    for document in documents:
        kubernetes_validate.validate(document, "1.35.0", strict=True)
    assert "sk_live_only-in-the-secret" not in yaml.safe_dump_all(d for d in documents if d["kind"] != "Secret")
    # The stop signal is the one thing a Deployment cannot say: the user is told where it comes from.
    assert "note: email stops with SIGINT: on Kubernetes that is the image's STOPSIGNAL" in result.stderr


def test_namespace_image_and_release(tmp_path: Path) -> None:
    result = render(tmp_path, "--namespace", "jobs", "--image", "registry.local/{project}/{service}:v3",
                    "--release", "4")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert "Namespace" not in [d["kind"] for d in documents]
    [email] = [d for d in documents if d["metadata"]["name"] == "shop-email"]
    [box] = email["spec"]["template"]["spec"]["containers"]
    assert (email["metadata"]["namespace"], box["image"]) == ("jobs", "registry.local/shop/email:v3")
    assert {"name": "STACKBLAZE_RELEASE", "value": "4"} in box["env"]


def test_out_writes_one_file_per_object_in_apply_order(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "00-deployment-shop-gone.yaml").write_text("kind: Deployment\n")  # a service removed since
    result = render(tmp_path, "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.yaml"))
    assert [f.name for f in files] == ["00-deployment-shop-gone.yaml", "00-namespace-shop.yaml",
                                       "01-secret-shop-email-env.yaml", "02-deployment-shop-email.yaml",
                                       "03-secret-shop-reports-env.yaml", "04-deployment-shop-reports.yaml"]
    assert result.stdout.splitlines() == [str(f) for f in files if "gone" not in f.name]
    assert "00-deployment-shop-gone.yaml was not written by this render" in result.stderr
    assert stat.S_IMODE((out / "01-secret-shop-email-env.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "02-deployment-shop-email.yaml").stat().st_mode) == 0o644
    [secret] = yaml.safe_load_all((out / "01-secret-shop-email-env.yaml").read_text())
    # Strings that YAML would read as a bool, a number or null stay strings: kubectl rejects anything else.
    assert secret["stringData"] == {"EMPTY": "", "ENABLED": "yes", "STRIPE_KEY": "sk_live_only-in-the-secret",
                                    "ZIP": "007"}
    kubernetes_validate.validate(secret, "1.35.0", strict=True)


def test_json_and_errors(tmp_path: Path) -> None:
    result = render(tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["project"] == "shop" and len(payload["manifests"]) == 5
    bad = render(tmp_path, "--namespace", "Jobs", "--json")
    assert bad.returncode != 0 and bad.stdout == ""
    error = json.loads(bad.stderr.strip().splitlines()[-1])
    assert error["error"].startswith("--namespace: 'Jobs' is not a DNS-1123 label")
    missing = render(tmp_path, str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert missing.stderr == f"error: {tmp_path / 'nowhere'}: no such file or directory (check the path)\n"


def test_a_target_gives_its_namespace_and_registry(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    spec = SPEC + "targets:\n  prod: {kind: kubernetes, namespace: shop-prod, registry: 127.0.0.1:5000/acme}\n"
    (tmp_path / "app" / "stackblaze.yaml").write_text(spec, encoding="utf-8")
    env = {**os.environ, "STACKBLAZE_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "stackblaze.cli", "render", "k8s", "--target", "prod", "--json"],
                            cwd=tmp_path / "app", capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    manifests = json.loads(result.stdout)["manifests"]
    assert "Namespace" not in {m["kind"] for m in manifests}  # the target's namespace is not ours to create
    assert {m["metadata"]["namespace"] for m in manifests} == {"shop-prod"}
    images = [m["spec"]["template"]["spec"]["containers"][0]["image"] for m in manifests if m["kind"] == "Deployment"]
    assert images == ["127.0.0.1:5000/acme/shop-email:latest", "127.0.0.1:5000/acme/shop-reports:latest"]
    wrong = render(tmp_path, "--target", "stage")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == ("error: --target: 'stage' is not a target of this project (targets: local; "
                                    "add it under targets: in stackblaze.yaml)")


def test_a_latency_slo_kubernetes_cannot_follow_is_said_not_dropped_silently(tmp_path: Path) -> None:
    """KEDA sizes on work / target alone: a worker's latency_slo would do nothing on a cluster, and says so."""
    app = tmp_path / "slo"
    app.mkdir()
    (app / "stackblaze.yaml").write_text("""\
project: shop
services:
  - name: mailer
    start: python -m worker
    autoscale:
      max: 4
      latency_slo: 30s
      queues: {kind: rabbitmq, url: "http://guest:guest@mq.example:15672/%2F", names: [mail]}
  - name: reports
    start: python -m reports
    autoscale: {max: 2, queues: {kind: rabbitmq, url: "http://guest:guest@mq.example:15672/%2F", names: [r]}}
""", encoding="utf-8")
    env = {**os.environ, "STACKBLAZE_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-m", "stackblaze.cli", "render", "k8s"], cwd=app, capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "latency_slo" in line]
    assert notes == ["note: mailer: autoscale.latency_slo 30s has no effect on Kubernetes for rabbitmq queues (KEDA's "
                     "own rabbitmq trigger reads no job age); the local engine adds a replica while the oldest job is "
                     "older than it"]
