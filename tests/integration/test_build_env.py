"""The build environment is the user's: the deploying shell's PATH, the project's env and its secrets
(which never appear in a log or anywhere under STACKBLAZE_HOME)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import Stackblaze, wait_for, write_project

SECRET = "sk-live-7f3e9b2c41d0"
# Prints what the build step left in the tree, then idles: the worker's log says what the build saw.
WORKER = ("import pathlib, time\nprint('built:', pathlib.Path('from-build.txt').read_text(), flush=True)\n"
          "time.sleep(1e6)\n")


def spec(name: str, build: str) -> str:
    return (f"project: {name}\nservices:\n  - name: worker\n    type: worker\n    build: {build}\n"
            "    start: python3 -u worker.py\n")


def logs_contain(sb: Stackblaze, text: str) -> bool:
    return text in sb.run("logs", "worker", "-n", "50").out


def test_a_tool_put_on_path_after_the_daemon_started_is_found_by_the_next_deploy(sb: Stackblaze,
                                                                                 tmp_path: Path) -> None:
    sb.run("daemon", "start")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "mytool").write_text("#!/bin/sh\nprintf 'made by mytool %s' \"$1\" > from-build.txt\n")
    (tools / "mytool").chmod(0o755)
    sb.env["PATH"] = f"{tools}:{sb.env['PATH']}"
    app = write_project(tmp_path / "app", spec("toolapp", "mytool v1"), {"worker.py": WORKER})
    sb.run("deploy", str(app), timeout=120)
    wait_for("the worker to print what mytool made", lambda: logs_contain(sb, "built: made by mytool v1"))


def test_env_set_values_reach_the_build_and_a_secret_is_never_written(sb: Stackblaze, tmp_path: Path) -> None:
    build = 'printf "%s %s" "$GREETING" "${TOKEN:+token-set}" > from-build.txt && echo "token is $TOKEN"'
    app = write_project(tmp_path / "app", spec("envapp", f"'{build}'"), {"worker.py": WORKER})
    outputs = [sb.run("deploy", str(app), timeout=120)]
    wait_for("the first release to run", lambda: logs_contain(sb, "built:"))

    sb.run("env", "set", "GREETING=hello-from-env-set")
    sb.run("env", "set", "--secret", "TOKEN", stdin=SECRET)
    outputs.append(sb.run("deploy", str(app), "--json", timeout=120))
    assert outputs[-1].json()["services"][0]["new_release"] is True  # the same tree: the env alone rebuilt it
    wait_for("the worker to print what the build saw",
             lambda: logs_contain(sb, "built: hello-from-env-set token-set"))
    build_log = sb.run("logs", "worker", "--build").out
    assert "token is ••••••" in build_log

    failing = f"'{build} && exit 3'"
    write_project(app, spec("envapp", failing))
    outputs.append(sb.run("deploy", str(app), check=False, timeout=120))
    assert outputs[-1].code != 0 and "token is ••••••" in outputs[-1].err + outputs[-1].out

    shown = "".join(result.out + result.err for result in outputs) + sb.run("logs", "worker", "--build").out
    assert SECRET not in shown
    written = [path for path in sb.home.rglob("*") if path.is_file() and SECRET.encode() in path.read_bytes()]
    assert written == []
