"""render_containerfile and the builder choice: what ends up in the image, and what must not."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from stackblaze.build.detect import detect_plan
from stackblaze.build.image import (
    ImageBuildError,
    ImageToolchains,
    builder_args,
    builder_command,
    find_builder,
    find_ca_bundle,
    image_tag,
    render_containerfile,
    resolve_bases,
)
from stackblaze.build.plan import BuildPlan
from stackblaze.build.toolchains import FakeToolchains
from stackblaze.errors import UserError
from stackblaze.spec.model import Service

PYTHON = BuildPlan(
    service="worker", root=".", runtime="python", version="3.11", version_source=".python-version",
    resolved_version="3.11.2", package_manager="pip", tool_version="23.0",
    install="python -m venv $DEPS && $DEPS/bin/pip install -r requirements.txt",
    build="python -m compileall -q .", start="celery -A app worker --concurrency=4",
    lockfiles=("requirements.txt", "constraints/base.txt"),
    env={"PATH": "$DEPS/bin:$PATH", "VIRTUAL_ENV": "${DEPS}"},
)


def stages(text: str) -> list[list[str]]:
    """Instruction lines (continuations joined) grouped by FROM."""
    joined = text.replace("\\\n", " ")
    result: list[list[str]] = []
    for line in joined.splitlines():
        if line.startswith("FROM "):
            result.append([])
        if line.strip() and not line.startswith("#") and result:
            result[-1].append(line)
    return result


def index(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


def test_the_dependency_stage_sees_only_the_lockfiles_and_installs_at_the_final_path() -> None:
    deps, final = stages(render_containerfile(PYTHON, base="python:3.11-slim"))
    assert deps[0] == "FROM python:3.11-slim AS deps"
    assert deps[1] == "WORKDIR /stackblaze/install"  # beside the layer: `cp -R . $DEPS` must not recurse
    copies = [line for line in deps if line.startswith("COPY")]
    assert copies == ["COPY requirements.txt ./", "COPY constraints/base.txt ./constraints/base.txt"]
    run = deps[-1]
    assert run.startswith("RUN ") and "export DEPS=/app/.deps" in run and run.endswith(PYTHON.install or "")
    # the final stage takes the installed layer, then the source, then builds
    assert index(final, "COPY --from=deps /app/.deps /app/.deps") < index(final, "COPY . ./")
    assert index(final, "COPY . ./") < index(final, "RUN ") and final[index(final, "RUN ")].endswith("compileall -q .")


def test_no_install_means_no_dependency_stage() -> None:
    plan = replace(PYTHON, install=None, build=None, lockfiles=())
    (only,) = stages(render_containerfile(plan, base="busybox"))
    assert not any(line.startswith(("RUN", "COPY --from")) for line in only)


def test_the_image_runs_as_a_non_root_user() -> None:
    final = stages(render_containerfile(PYTHON, base="b"))[-1]
    user = next(line for line in final if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert index(final, "USER") > max(i for i, line in enumerate(final) if line.startswith("RUN"))


def test_env_has_deps_substituted_and_keeps_path_for_the_base() -> None:
    final = stages(render_containerfile(PYTHON, base="b"))[-1]
    assert 'ENV PATH="/app/.deps/bin:$PATH"' in final
    assert 'ENV VIRTUAL_ENV="/app/.deps"' in final


def test_stop_signal_and_labels() -> None:
    text = render_containerfile(PYTHON, base="b", stop_signal="SIGQUIT", project="acme", release="r7")
    assert "STOPSIGNAL SIGQUIT" in text.splitlines()
    label = next(line for line in text.splitlines() if line.startswith("LABEL"))
    assert 'dev.stackblaze.service="worker"' in label and 'dev.stackblaze.release="r7"' in label
    assert 'dev.stackblaze.project="acme"' in label


def test_tini_only_when_the_base_has_one() -> None:
    assert "ENTRYPOINT" not in render_containerfile(PYTHON, base="python:3.11-slim")
    with_init = render_containerfile(PYTHON, base="my/python-tini", init="tini")
    assert 'ENTRYPOINT ["tini", "--"]' in with_init.splitlines()


def test_the_ca_bundle_is_mounted_into_run_steps_and_never_reaches_the_image_config() -> None:
    text = render_containerfile(PYTHON, base="b", ca_bundle=True)
    runs = [line for stage in stages(text) for line in stage if line.startswith("RUN")]
    assert len(runs) == 2
    for run in runs:
        assert "--mount=type=secret,id=stackblaze-ca,target=/run/secrets/stackblaze-ca.crt" in run
        assert "PIP_CERT=$ca" in run and "NODE_EXTRA_CA_CERTS=$ca" in run and "SSL_CERT_FILE=$ca" in run
    config = [line for stage in stages(text) for line in stage if not line.startswith("RUN")]
    assert not any("stackblaze-ca" in line or "CERT" in line for line in config)
    assert "--mount" not in render_containerfile(PYTHON, base="b")


def test_a_multi_line_command_stays_one_instruction() -> None:
    plan = replace(PYTHON, build="set -e\necho \"built\" > out.txt")
    run = next(line for line in stages(render_containerfile(plan, base="b"))[-1] if line.startswith("RUN"))
    argv = json.loads(run.removeprefix("RUN "))
    assert argv[:2] == ["/bin/sh", "-c"] and argv[2].endswith('set -e\necho "built" > out.txt')


def test_links_point_into_the_dependency_layer_before_the_build() -> None:
    plan = replace(PYTHON, runtime="node", install="npm ci", lockfiles=("package-lock.json",),
                   start="node dist/worker.js", build="npm run build",
                   links=("node_modules", "packages/api/node_modules"))
    final = stages(render_containerfile(plan, base="node:20-slim"))[-1]
    link = index(final, "RUN if [ -e /app/.deps/node_modules ]; then rm -rf node_modules && ln -s")
    assert index(final, "COPY . ./") < link < index(final, "RUN export DEPS=/app/.deps && npm run build")
    assert "mkdir -p packages/api && ln -s /app/.deps/packages/api/node_modules packages/api/node_modules" \
        in final[link]


def test_a_monorepo_service_builds_and_starts_in_its_directory() -> None:
    plan = replace(PYTHON, root="services/email", copy_root=".", lockfiles=("package-lock.json",))
    final = stages(render_containerfile(plan, base="b"))[-1]
    assert index(final, "COPY . ./") < index(final, "WORKDIR /app/services/email") < index(final, "RUN ")


def test_an_install_that_needs_the_source_sees_all_of_it() -> None:
    plan = replace(PYTHON, install="$DEPS/bin/pip install .", install_needs_source=True)
    deps = stages(render_containerfile(plan, base="b"))[0]
    assert [line for line in deps if line.startswith("COPY")] == ["COPY . ./"]


def test_only_deps_and_path_are_placeholders_in_env() -> None:
    plan = replace(PYTHON, env={"PATH": "$DEPS/venv/bin:$PATH", "PRICE": "$5 \\ \"x\"", "P2": "${PATH}x"})
    final = stages(render_containerfile(plan, base="b"))[-1]
    assert 'ENV PATH="/app/.deps/venv/bin:$PATH"' in final
    assert 'ENV PRICE="\\$5 \\\\ \\"x\\""' in final  # Dockerfile escapes: the value stays `$5 \ "x"`
    assert 'ENV P2="${PATH}x"' in final


def test_a_separate_run_base_gets_the_built_app_and_the_env() -> None:
    plan = replace(PYTHON, runtime="go", install="go mod download", build="go build -o bin/pump .",
                   start="./bin/pump", lockfiles=("go.mod",), env={"GOFLAGS": "-mod=mod"})
    build_base, run_base = resolve_bases(replace(plan, resolved_version="1.19.8"), environ={})
    assert (build_base, run_base) == ("golang:1.19", "debian:bookworm-slim")
    *_, build, final = stages(render_containerfile(plan, base=build_base, run_base=run_base))
    assert build[0] == "FROM golang:1.19 AS build" and "RUN rm -rf /app/.deps" in build
    assert final[0] == "FROM debian:bookworm-slim" and "COPY --from=build /app /app" in final
    assert 'ENV GOFLAGS="-mod=mod"' in final and final[-1] == 'CMD ["./bin/pump"]'


def test_bases_come_from_the_option_then_the_environment_then_the_resolved_version() -> None:
    assert resolve_bases(PYTHON, environ={}) == ("python:3.11-slim", None)
    assert resolve_bases(replace(PYTHON, resolved_version="3.12.1"), environ={})[0] == "python:3.12-slim"
    node = replace(PYTHON, runtime="node", resolved_version="v20.11.0")
    assert resolve_bases(node, environ={})[0] == "node:20-slim"
    environ = {"STACKBLAZE_BASE_IMAGE_PYTHON": "local/python:3.11"}
    assert resolve_bases(PYTHON, environ=environ)[0] == "local/python:3.11"
    assert resolve_bases(PYTHON, base="mine", environ=environ)[0] == "mine"
    assert resolve_bases(PYTHON, environ={"STACKBLAZE_RUN_IMAGE_PYTHON": "slim"}) == ("python:3.11-slim", "slim")


def test_bad_env_values_are_a_user_error() -> None:
    with pytest.raises(UserError, match="BAD"):
        render_containerfile(replace(PYTHON, env={"BAD": "two\nlines"}), base="b")


def test_builders_are_tried_in_order_and_docker_needs_a_daemon() -> None:
    installed = {"docker": "/usr/bin/docker", "podman": "/usr/bin/podman"}
    assert find_builder(which=installed.get, docker_answers=lambda _: True) == "/usr/bin/podman"
    only_docker = {"docker": "/usr/bin/docker"}.get
    assert find_builder(which=only_docker, docker_answers=lambda _: True) == "/usr/bin/docker"
    with pytest.raises(ImageBuildError, match=r"^no image builder found \(install buildah: apt-get install buildah\)$"):
        find_builder(which=only_docker, docker_answers=lambda _: False)
    with pytest.raises(ImageBuildError, match="not found on PATH"):
        find_builder("buildah", which=only_docker)
    with pytest.raises(UserError, match="kaniko"):
        find_builder("kaniko", which=only_docker)


def test_builder_command_lines(tmp_path: Path) -> None:
    file, ctx, ca = tmp_path / "Containerfile", tmp_path / "ctx", Path("/etc/ca.pem")
    buildah = builder_command("/usr/bin/buildah", containerfile=file, context=ctx, tag="t:1", ca_bundle=ca,
                              extra_args=builder_args("buildah", {}))
    assert buildah == ["/usr/bin/buildah", "bud", "--storage-driver", "vfs", "--isolation", "chroot", "--layers",
                       "-f", str(file), "-t", "t:1", "--secret", "id=stackblaze-ca,src=/etc/ca.pem", str(ctx)]
    assert builder_args("buildah", {"STACKBLAZE_BUILDAH_ARGS": "--root /x"}) == ["--root", "/x"]
    docker = builder_command("docker", containerfile=file, context=ctx, tag="t", ca_bundle=None)
    assert docker == ["docker", "build", "-f", str(file), "-t", "t", str(ctx)]


def test_ca_bundle_choice(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert find_ca_bundle({"SSL_CERT_FILE": str(pem)}) == pem
    assert find_ca_bundle({"STACKBLAZE_CA_BUNDLE": "none", "SSL_CERT_FILE": str(pem)}) is None
    assert find_ca_bundle({"STACKBLAZE_CA_BUNDLE": str(pem)}) == pem


def test_image_tags() -> None:
    assert image_tag(None, project="Acme", service="mailer") == "acme-mailer:latest"
    assert image_tag("reg.local/{project}/{service}:v2", project="acme", service="mailer") == "reg.local/acme/mailer:v2"


def test_detection_for_an_image_runs_the_bare_interpreter_of_the_base(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("redis==5.0.1\n")
    (tmp_path / ".python-version").write_text("3.12\n")
    host = FakeToolchains(python=["3.11.7", "3.12.1"], go=[])
    service = Service(name="worker", start="python worker.py")
    on_host = detect_plan(tmp_path, service, toolchains=host)
    in_image = detect_plan(tmp_path, service, toolchains=ImageToolchains(host))
    assert "/opt/python/3.12.1/bin/python3" in (on_host.install or "")
    assert (in_image.install or "").startswith("python3 -m venv") and in_image.resolved_version == "3.12.1"
    assert resolve_bases(in_image, environ={})[0] == "python:3.12-slim"
    # a runtime this machine lacks is assumed at the default base's version
    assert ImageToolchains(host).default("go") == ImageToolchains(host).installed("go")[0]
    assert ImageToolchains(host).installed("go")[0].path == "go"

