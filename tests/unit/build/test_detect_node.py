"""Node detection: package manager from packageManager or the lockfile, versions, workspaces, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackblaze.build.toolchains import FakeToolchains

from .trees import plan_error, plan_for, write

COPY = 'mkdir -p "$DEPS" && cp -R ./. "$DEPS/" && cd "$DEPS" && '


def package(**fields: object) -> str:
    return json.dumps({"name": "w", **fields}, indent=2)


@pytest.mark.parametrize(("lockfile", "manager", "install"), [
    ("pnpm-lock.yaml", "pnpm", "pnpm install --frozen-lockfile"),
    ("yarn.lock", "yarn", "yarn install --non-interactive --frozen-lockfile"),
    ("bun.lock", "bun", "bun install --frozen-lockfile"),
    ("bun.lockb", "bun", "bun install --frozen-lockfile"),
    ("package-lock.json", "npm", "npm ci --no-audit --no-fund"),
    ("npm-shrinkwrap.json", "npm", "npm ci --no-audit --no-fund"),
])
def test_the_lockfile_names_the_package_manager(tmp_path: Path, lockfile: str, manager: str, install: str) -> None:
    plan = plan_for(write(tmp_path, {"package.json": package(), lockfile: ""}), start="node worker.js")
    assert (plan.runtime, plan.package_manager, plan.install) == ("node", manager, COPY + install)
    assert plan.lockfiles == ("package.json", lockfile)
    assert plan.links == ("node_modules",)
    assert plan.env == {"PATH": "$DEPS/node_modules/.bin:$PATH"}


def test_lockfiles_are_looked_for_in_order(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(), "package-lock.json": "", "yarn.lock": "", "pnpm-lock.yaml": ""})
    assert plan_for(tmp_path, start="node w.js").package_manager == "pnpm"


def test_no_lockfile_is_npm_install_with_a_note(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"package.json": package()}), start="node w.js")
    assert (plan.package_manager, plan.install) == ("npm", COPY + "npm install --no-audit --no-fund")
    assert plan.notes == ("no lockfile: npm chooses dependency versions at each install "
                          "(commit the lockfile npm writes)",)


def test_package_manager_field_wins_over_the_lockfile(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(packageManager="pnpm@9.1.0+sha512.abc"), "package-lock.json": "",
                     ".npmrc": "x", "patches/a.patch": ""})
    plan = plan_for(tmp_path, start="node w.js")
    assert (plan.package_manager, plan.tool_version) == ("pnpm", "9.1.0")
    assert plan.install == COPY + "pnpm install --frozen-lockfile"
    assert plan.lockfiles == ("package.json", "package-lock.json", ".npmrc", "patches/a.patch")
    assert plan.warnings == ()


def test_yarn_berry_installs_node_modules_not_plug_and_play(tmp_path: Path) -> None:
    machine = FakeToolchains(node=["20.11.1"], tools={"yarn": "4.1.0"})
    write(tmp_path, {"package.json": package(packageManager="yarn@4.1.0"), "yarn.lock": "",
                     ".yarnrc.yml": "yarnPath: .yarn/releases/yarn-4.1.0.cjs\n", ".yarn/releases/yarn-4.1.0.cjs": ""})
    plan = plan_for(tmp_path, start="node w.js", toolchains=machine)
    assert plan.install == COPY + "YARN_NODE_LINKER=node-modules yarn install --immutable"
    assert ".yarn/releases/yarn-4.1.0.cjs" in plan.lockfiles and ".yarnrc.yml" in plan.lockfiles


def test_a_package_manager_of_another_major_version_is_a_warning(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(packageManager="yarn@4.1.0"), "yarn.lock": ""})
    plan = plan_for(tmp_path, start="node w.js")
    assert plan.warnings == ("package.json:3: packageManager: asks for yarn 4.1.0, this machine has yarn 1.22.19 "
                             "(run corepack enable yarn to use the version asked for)",)


def test_a_missing_package_manager_is_an_error_naming_what_asked(tmp_path: Path) -> None:
    machine = FakeToolchains(node=["20.11.1"], tools={"npm": "10.2.4"})
    write(tmp_path, {"package.json": package(), "pnpm-lock.yaml": ""})
    assert plan_error(tmp_path, toolchains=machine, start="node w.js") == (
        "pnpm-lock.yaml: pnpm is needed but not installed here (install it: npm install -g pnpm, or corepack "
        "enable pnpm)")


def test_a_package_manager_field_that_is_not_one(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(packageManager="deno@1")})
    assert plan_error(tmp_path, start="node w.js") == (
        "package.json:3: packageManager: 'deno@1' is not npm, pnpm, yarn or bun with a version "
        '(e.g. "packageManager": "pnpm@9.1.0")')


def test_scripts_build_is_run_with_the_package_manager(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(scripts={"build": "tsc", "start": "node dist/w.js"}), "yarn.lock": ""})
    assert plan_for(tmp_path, start="node dist/w.js").build == "yarn run build"


def test_install_scripts_of_the_root_package_are_warned(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(scripts={"postinstall": "node scripts/gen.js"})})
    assert plan_for(tmp_path, start="node w.js").warnings == (
        "package.json: scripts.postinstall runs during install, which sees only the lockfiles and not your code "
        "(move it into scripts.build if it needs the code)",)


@pytest.mark.parametrize(("files", "asked", "source", "resolved"), [
    ({"package.json": package(engines={"node": ">=20"})}, ">=20", "package.json engines.node", "20.11.1"),
    ({"package.json": package(engines={"node": "18.x"}), ".nvmrc": "20\n"}, "18.x", "package.json engines.node",
     "18.19.0"),
    ({"package.json": package(engines={"node": "^18.2"})}, "^18.2", "package.json engines.node", "18.19.0"),
    ({"package.json": package(), ".nvmrc": "v18.19.0\n", ".node-version": "20"}, "v18.19.0", ".nvmrc", "18.19.0"),
    ({"package.json": package(), ".nvmrc": "lts/iron\n"}, "*", ".nvmrc", "20.11.1"),
    ({"package.json": package(), ".node-version": "18\n"}, "18", ".node-version", "18.19.0"),
    ({"package.json": package()}, None, None, "20.11.1"),  # nothing asked: what `node` runs
])
def test_node_version_from_engines_then_nvmrc_then_node_version(
    tmp_path: Path, files: dict[str, str], asked: str | None, source: str | None, resolved: str,
) -> None:
    plan = plan_for(write(tmp_path, files), start="node w.js")
    assert (plan.version, plan.version_source, plan.resolved_version) == (asked, source, resolved)


def test_a_node_version_the_machine_cannot_provide_names_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(engines={"node": ">=22"})})
    assert plan_error(tmp_path, start="node w.js") == (
        "package.json:4: engines.node: node >=22 is not installed here (installed: 18.19.0, 20.11.1; "
        "install it or change engines.node in package.json)")
    write(tmp_path, {"package.json": package(), ".nvmrc": "21\n"})
    assert plan_error(tmp_path, start="node w.js") == (
        ".nvmrc:1: node 21 is not installed here (installed: 18.19.0, 20.11.1; install it or change .nvmrc)")


def test_a_node_version_that_is_not_a_range(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(engines={"node": "twenty"})})
    assert plan_error(tmp_path, start="node w.js") == (
        "package.json:4: engines.node: 'twenty' is not a node version (e.g. >=20)")


def test_invalid_package_json_is_one_line(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": '{\n  "name": "w",\n}\n'})
    assert plan_error(tmp_path, start="node w.js").startswith("package.json:3: invalid JSON: ")


def test_a_workspace_member_installs_at_the_workspace_root(tmp_path: Path) -> None:
    write(tmp_path, {
        "package.json": package(workspaces=["services/*"], packageManager="pnpm@9.1.0"),
        "pnpm-lock.yaml": "", "pnpm-workspace.yaml": "packages: ['services/*']\n",
        "services/email/package.json": package(scripts={"build": "tsc"}, engines={"node": "18"}),
        "services/sms/package.json": package(),
    })
    plan = plan_for(tmp_path, root="services/email", start="node dist/w.js")
    assert (plan.copy_root, plan.workdir, plan.package_manager) == (".", "services/email", "pnpm")
    assert plan.lockfiles == ("package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml",
                              "services/email/package.json", "services/sms/package.json")
    assert plan.links == ("node_modules", "services/email/node_modules", "services/sms/node_modules")
    assert plan.env == {"PATH": "$DEPS/services/email/node_modules/.bin:$DEPS/node_modules/.bin:$PATH"}
    assert (plan.build, plan.resolved_version, plan.version_source) == (
        "pnpm run build", "18.19.0", "services/email/package.json engines.node")


def test_a_package_with_its_own_lockfile_is_not_a_workspace_member(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": package(), "package-lock.json": "",
                     "services/email/package.json": package(), "services/email/yarn.lock": ""})
    plan = plan_for(tmp_path, root="services/email", start="node w.js")
    assert (plan.copy_root, plan.workdir, plan.package_manager) == ("services/email", ".", "yarn")
