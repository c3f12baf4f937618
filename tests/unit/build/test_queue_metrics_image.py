"""build/queue_metrics_image.py without a builder: the wheel it makes of this stackblaze installs and holds the
server, the Containerfile keeps the dependencies in a layer of their own under the CA secret, the dependencies
are pinned to what runs here, a publish answers from its cache, and a deploy needs the image only for the kinds
the cluster reads through the server. The real build, push and run: tests/integration/test_queue_metrics_image.py."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from stackblaze.build.queue_metrics_image import (
    CACHE_FILE,
    IMAGE_NAME,
    Stackblaze,
    constraints,
    image_tag,
    make_wheel,
    publish_for,
    publish_queue_metrics_image,
    python_base,
    render_containerfile,
    requirements,
)
from stackblaze.build.registry import MANIFEST_TYPES
from stackblaze.errors import UserError
from stackblaze.spec import Project, load_project
from stackblaze.spec.targets import Target
from tests.unit.build.conftest import KEPT, LOST


def test_the_wheel_installs_the_server_and_is_the_same_bytes_for_the_same_code(tmp_path: Path) -> None:
    source = Stackblaze.installed()
    wheel = make_wheel(source, tmp_path / "one")
    assert wheel.name == f"stackblaze-{source.version}-py3-none-any.whl"
    assert make_wheel(source, tmp_path / "two").read_bytes() == wheel.read_bytes()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read(f"stackblaze-{source.version}.dist-info/RECORD").decode()
    assert "stackblaze/engine/autoscale/metrics_server.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert all(name in record for name in names)
    # pip takes it (its RECORD and WHEEL are what an installer checks): installed into a bare target folder
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--disable-pip-version-check", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (target / "stackblaze" / "engine" / "autoscale" / "metrics_server.py").is_file()


def test_the_dependencies_are_pinned_to_what_runs_here() -> None:
    dist = Stackblaze.installed().dist
    wanted = requirements(dist)
    assert any(r.startswith("fastapi") for r in wanted) and any(r.startswith("redis") for r in wanted)
    assert any(r.startswith("kubernetes") for r in wanted)  # deletion_cost.py's client, in a cluster
    assert not [r for r in wanted if r.startswith(("pytest", "ruff"))]  # the test extra is not the server's
    pins = constraints(dist)
    assert f"fastapi=={version('fastapi')}" in pins and f"uvicorn=={version('uvicorn')}" in pins
    assert f"starlette=={version('starlette')}" in pins  # a dependency's dependency too


def test_the_containerfile_installs_the_dependencies_apart_under_the_ca_secret() -> None:
    text = render_containerfile(base="python:3.11-slim", wheel="stackblaze-0.1.0-py3-none-any.whl", version="0.1.0",
                                ca_bundle=True)
    lines = text.splitlines()
    deps = next(i for i, line in enumerate(lines) if "-r /tmp/stackblaze-install/requirements.txt" in line)
    wheel = next(i for i, line in enumerate(lines) if line.startswith("COPY stackblaze-0.1.0"))
    assert deps < wheel  # a stackblaze edit reuses the dependency layer
    assert "--mount=type=secret,id=stackblaze-ca" in lines[deps] and "PIP_CERT=$ca" in lines[deps]
    assert "--mount" not in lines[wheel + 1]  # the wheel installs with --no-deps: no index, no CA
    assert lines[-1] == 'ENTRYPOINT ["/opt/stackblaze/bin/python", "-m", "stackblaze.engine.autoscale.metrics_server"]'
    assert "USER 10001:10001" in lines
    plain = render_containerfile(base="b", wheel="w.whl", version="0.1.0", ca_bundle=False)
    assert "secret" not in plain


def test_the_base_is_the_project_python_images_one() -> None:
    assert python_base({}) == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert python_base({"STACKBLAZE_BASE_IMAGE_PYTHON": "localhost/py"}) == "localhost/py"


def test_a_publish_answers_from_its_cache_without_a_builder_while_the_registry_holds_it(
    tmp_path: Path, registry_api: tuple[str, list[tuple[str, str]]],
) -> None:
    """Once per stackblaze build, base and registry: a cached reference the registry still holds (a HEAD of its
    manifest: conftest.py's server) is returned as it is, before any builder is looked for (the builder named
    here does not exist: looking for it is a UserError). One the registry lost is built again."""
    address, asked = registry_api
    source = Stackblaze.installed()
    key = f"{address}/acme/{IMAGE_NAME}:{image_tag(source, 'localhost/py')}"
    pinned = f"{address}/acme/{IMAGE_NAME}@{KEPT}"
    (tmp_path / CACHE_FILE).write_text(json.dumps({key: pinned}))
    said: list[str] = []
    assert publish_queue_metrics_image(f"{address}/acme", base="localhost/py", builder="nope", cache=tmp_path,
                                       insecure=True, output=said.append) == pinned
    assert asked == [(f"/v2/acme/{IMAGE_NAME}/manifests/{KEPT}", MANIFEST_TYPES)] and said == []
    assert image_tag(source, "localhost/other") != image_tag(source, "localhost/py")  # another base: another image
    with pytest.raises(UserError, match="'nope' is not a known image builder"):  # another registry: a build
        publish_queue_metrics_image("127.0.0.1:5000/other", base="localhost/py", builder="nope", cache=tmp_path)

    lost = f"{address}/acme/{IMAGE_NAME}@{LOST}"
    (tmp_path / CACHE_FILE).write_text(json.dumps({key: lost}))
    with pytest.raises(UserError, match="'nope' is not a known image builder"):
        publish_queue_metrics_image(f"{address}/acme", base="localhost/py", builder="nope", cache=tmp_path,
                                    insecure=True, output=said.append)
    assert said == [f"queue-metrics: {lost} is no longer in {address}/acme; building it again"]


def test_a_deploy_needs_the_image_only_for_the_kinds_the_server_reads(tmp_path: Path) -> None:
    def project(kind: str, url: str) -> Project:
        (tmp_path / "stackblaze.yaml").write_text(
            f"project: shop\nservices:\n  - name: work\n    start: python -m work\n    autoscale:\n      max: 4\n"
            f"      queues: {{kind: {kind}, url: '{url}', names: [q]}}\n", encoding="utf-8")
        return load_project(tmp_path)

    bare = Target(name="sim", kind="fake")
    rabbit = project("rabbitmq", "http://guest:guest@mq:15672/%2F")
    # KEDA counts RabbitMQ itself: no server, no image (else a build would start, and fail on its base)
    assert publish_for(rabbit, Target(name="sim", kind="fake", registry="127.0.0.1:1/a"), cache=tmp_path) is None
    assert publish_for(project("rq", "redis://cache:6379/0"), bare, cache=tmp_path) is None  # no registry: a name
