"""The release phase (a Procfile's `release:`, a service's `release:`) and releases that stay what was built:
real deploys through the CLI, a ledger file outside the release that commands and workers append to."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import PRELUDE, Stackblaze, free_port, marker, wait_for, write_project
from tests.tools import need

# Appends one line to $LEDGER, a file outside the release: what ran, for which release, when, from where.
LEDGER = """\
import os, time
def ledger(what):
    with open(os.environ["LEDGER"], "a") as handle:
        handle.write(f"{what} {os.environ['STACKBLAZE_RELEASE']} {time.time()!r} {os.getcwd()}\\n")
"""
MIGRATE = LEDGER + """\
import sys
print("migrating with", os.environ.get("DB_PASSWORD"), "from", open("schema.sql").read().strip(), flush=True)
if os.path.exists("broken"):
    print("ERROR:  relation \\"users\\" already exists", flush=True)
    sys.exit(3)
ledger("release")
"""
WORKER = LEDGER + "ledger('start')\nprint('up', flush=True)\ntime.sleep(1e6)\n"


def entries(path: Path) -> list[tuple[str, int, float, str]]:
    if not path.exists():
        return []
    return [(what, int(release), float(when), where)
            for what, release, when, where in (line.split(" ", 3) for line in path.read_text().splitlines())]


def procfile_app(tmp_path: Path, sb: Stackblaze) -> tuple[Path, Path]:
    app = tmp_path / "app"
    app.mkdir()
    (app / "Procfile").write_text("release: python3 migrate.py\nworker: python3 -u worker.py\n")
    for name, text in {"migrate.py": MIGRATE, "worker.py": WORKER, "schema.sql": "CREATE TABLE users ();"}.items():
        (app / name).write_text(text)
    ledger = tmp_path / "ledger"
    sb.run("env", "set", f"LEDGER={ledger}", f"STACKBLAZE_TEST_HOME={sb.home}", "--project", "app")
    sb.run("env", "set", "DB_PASSWORD", "--secret", "--project", "app", stdin="hunter2-secret\n")
    return app, ledger


def test_release_runs_once_per_new_release_before_any_of_its_replicas(sb: Stackblaze, tmp_path: Path) -> None:
    """Procfile `release:`: run with the replicas' env (a secret too, masked in the build log and progress),
    in its own copy of the release; before the first replica of its release starts; not on a redeploy
    of the same tree; again for a changed one."""
    app, ledger = procfile_app(tmp_path, sb)
    first = sb.run("deploy", str(app), timeout=120)
    assert "release command: python3 migrate.py" in first.err + first.out
    assert "hunter2-secret" not in first.err + first.out
    assert "migrating with •••••• from CREATE TABLE users ();" in first.err + first.out
    wait_for("release 1's replica", lambda: [e for e in entries(ledger) if e[0] == "start"])
    log = sb.run("logs", "worker", "--build", "--project", "app").out
    assert "migrating with •••••• from CREATE TABLE users ();" in log and "hunter2-secret" not in log

    sb.run("deploy", str(app), timeout=120)  # the same tree: release 1 again, its command not run again
    (app / "worker.py").write_text(WORKER + "# v2\n")
    sb.run("deploy", str(app), timeout=120)
    wait_for("release 2's replica", lambda: [e for e in entries(ledger) if e[:2] == ("start", 2)])

    ran = entries(ledger)
    print("\n" + ledger.read_text())
    assert [(what, release) for what, release, _, _ in ran if what == "release"] == [("release", 1), ("release", 2)]
    for number in (1, 2):
        release_done = next(when for what, release, when, _ in ran if (what, release) == ("release", number))
        starts = [when for what, release, when, _ in ran if (what, release) == ("start", number)]
        assert starts and min(starts) > release_done, f"a replica of release {number} started before its command"
    release_cwd = next(where for what, _, _, where in ran if what == "release")
    assert "/_replicas/" in release_cwd and not Path(release_cwd).exists(), "its copy is removed when it ends"
    kinds = [e["kind"] for e in sb.events(limit=200) if e["kind"] == "release-command"]
    assert len(kinds) == 2


def test_a_failing_release_command_fails_the_deploy_and_keeps_the_running_release(sb: Stackblaze,
                                                                                   tmp_path: Path) -> None:
    """Heroku's semantics: exit 1 with the command's last lines, the old replica untouched (same pid),
    the attempt listed as release-failed; the fix deploys as the next release."""
    app, ledger = procfile_app(tmp_path, sb)
    sb.run("deploy", str(app), timeout=120)
    before = wait_for("release 1 running", lambda: [r for r in sb.replicas("worker") if r["state"] == "running"])

    (app / "broken").write_text("")
    failed = sb.run("deploy", str(app), timeout=120, check=False)
    print(failed.err)
    assert failed.code == 1
    assert "release command failed (exit 3): python3 migrate.py" in failed.err
    assert 'relation "users" already exists' in failed.err
    assert "hunter2-secret" not in failed.err + failed.out
    after = sb.replicas("worker")
    assert [(r["pid"], r["release"], r["state"]) for r in after] == [(before[0]["pid"], 1, "running")]
    assert psutil.pid_exists(before[0]["pid"])
    releases = sb.run("releases", "worker", "--json", "--project", "app").json()
    assert [(r["number"], r.get("status")) for r in releases["releases"]] == [(1, None), (2, "release-failed")]
    assert "release command failed" in sb.run("releases", "worker", "--project", "app").out
    assert [e for e in entries(ledger) if e[0] == "start"] == [e for e in entries(ledger) if e[:2] == ("start", 1)]

    (app / "broken").unlink()
    (app / "schema.sql").write_text("CREATE TABLE IF NOT EXISTS users ();")
    sb.run("deploy", str(app), timeout=120)
    wait_for("release 3 running", lambda: [r["release"] for r in sb.replicas("worker") if r["state"] == "running"]
             == [3])
    assert [release for what, release, _, _ in entries(ledger) if what == "release"] == [1, 3]


def test_a_service_release_field_in_stackblaze_yaml(sb: Stackblaze, tmp_path: Path) -> None:
    """`release:` on a service runs for that service only, through sh -c (a redirection works)."""
    ledger = tmp_path / "ledger"
    app = write_project(tmp_path / "app", f"""\
project: yamlapp
env:
  LEDGER: "{ledger}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: worker
    start: python3 -u worker.py
    release: python3 migrate.py < schema.sql && echo "shell ran for $STACKBLAZE_SERVICE"
  - name: other
    start: python3 -u worker.py
""", {"migrate.py": LEDGER + "import sys\nledger('release:' + sys.stdin.read().split()[0])\n",
      "worker.py": WORKER, "schema.sql": "CREATE TABLE t ();"})
    out = sb.run("deploy", str(app), timeout=120)
    assert "worker     shell ran for worker" in out.err
    assert "other ==> release command" not in out.err
    assert [what for what, *_ in entries(ledger) if what.startswith("release")] == ["release:CREATE"]


def test_a_replica_writes_into_its_own_copy_never_into_the_release(sb: Stackblaze, tmp_path: Path) -> None:
    """Replica 1 writes out.txt and appends to data.txt where it runs; replica 2, a replica started after
    that, and a rollback to that release all see the release as built."""
    markers = tmp_path / "markers"
    markers.mkdir()
    worker = PRELUDE + """\
seen = {"out": os.path.exists("out.txt"), "data": open("data.txt").read(), "cwd": os.getcwd()}
mark(f"seen-{os.environ['STACKBLAZE_RELEASE']}-{REPLICA}-{os.getpid()}", json.dumps(seen))
if REPLICA == "1" and os.environ["STACKBLAZE_RELEASE"] == "1":
    open("out.txt", "w").write("mine")
    with open("data.txt", "a") as handle:
        handle.write("changed by replica 1\\n")
    mark("wrote", os.getcwd())
time.sleep(1e6)
"""
    app = write_project(tmp_path / "app", f"""\
project: immutable
env:
  MARKERS: "{markers}"
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: worker
    start: python3 -u worker.py
    replicas: 2
""", {"worker.py": "import json\n" + worker, "data.txt": "as built\n"})
    sb.run("deploy", str(app), timeout=120)
    wrote = Path(wait_for("replica 1 to write", lambda: marker(tmp_path, "wrote")))
    assert (wrote / "out.txt").read_text() == "mine"
    release = sb.run("releases", "worker", "--json", "--project", "immutable").json()["releases"][0]
    built = Path(release["path"])
    assert not (built / "out.txt").exists() and (built / "data.txt").read_text() == "as built\n"

    def seen(release: int) -> list[dict[str, object]]:
        return [json.loads(p.read_text()) for p in markers.glob(f"seen-{release}-*")]

    sb.run("scale", "worker", "--replicas", "3", "--project", "immutable")
    wait_for("three replicas reporting", lambda: len(seen(1)) == 3)
    assert [(s["out"], s["data"]) for s in seen(1)] == [(False, "as built\n")] * 3
    assert len({s["cwd"] for s in seen(1)}) == 3, "each replica has its own working directory"

    (app / "worker.py").write_text((app / "worker.py").read_text() + "# v2\n")
    sb.run("deploy", str(app), timeout=120)
    wait_for("release 2 running", lambda: {r["release"] for r in sb.replicas("worker")} == {2})
    assert not wrote.exists(), "an ended replica's copy is removed"
    for path in markers.glob("seen-1-*"):
        path.unlink()
    sb.run("rollback", "worker", "--project", "immutable")
    wait_for("the rollback's replicas reporting", lambda: len(seen(1)) == 3)
    assert [(s["out"], s["data"]) for s in seen(1)] == [(False, "as built\n")] * 3


def test_a_python_release_is_byte_compiled_at_build(sb: Stackblaze, tmp_path: Path) -> None:
    """The release tree holds each module's .pyc (made by the release's interpreter, the venv's); a file
    that does not compile is a warning in the build log, not a failed build."""
    app = write_project(tmp_path / "app", f"""\
project: pyc
env:
  STACKBLAZE_TEST_HOME: "{sb.home}"
services:
  - name: worker
    start: python -u worker.py
""", {"requirements.txt": "", "worker.py": "import helper, time\nhelper.hello()\ntime.sleep(1e6)\n",
      "helper.py": "def hello():\n    print('hello', flush=True)\n",
      "scripts/old_py2.py": "print 'python 2'\n"})
    sb.run("deploy", str(app), timeout=180)
    release = sb.run("releases", "worker", "--json", "--project", "pyc").json()["releases"][0]
    tree = Path(release["path"])
    compiled = sorted(p.name.split(".")[0] for p in tree.rglob("__pycache__/*.pyc"))
    assert compiled == ["helper", "worker"]
    log = sb.run("logs", "worker", "--build", "--project", "pyc").out
    print(log)
    assert "==> byte-compiling: python -m compileall -q ." in log
    assert "old_py2.py" in log and "warning: byte-compiling failed" in log
    wait_for("the worker's line", lambda: "hello" in sb.run("logs", "worker", "--project", "pyc").out)


def test_on_a_cluster_target_the_release_command_runs_here_before_anything_is_applied(sb: Stackblaze,
                                                                                    tmp_path: Path) -> None:
    """A `kind: fake` target (the in-process fake cluster: no kubelet runs here): the command runs on this
    machine with the target's `env set` values, deploy says so, and a failure applies nothing."""
    ledger = tmp_path / "ledger"
    app = write_project(tmp_path / "app", """\
project: shop
services:
  - name: worker
    start: python3 worker.py
    release: python3 migrate.py
    min_ready: 0s
targets:
  sim:
    kind: fake
    behaviours:
      python3 worker.py: {lines: ["job 1 done"]}
""", {"migrate.py": MIGRATE, "worker.py": WORKER, "schema.sql": "CREATE TABLE users ();"})
    sb.run("env", "set", f"LEDGER={ledger}", "--project", "shop", "--target", "sim")
    out = sb.run("deploy", str(app), "--target", "sim", timeout=120)
    assert "the release command runs here, on this machine, not in the cluster" in out.err
    assert [what for what, *_ in entries(ledger)] == ["release"]
    wait_for("the fake cluster's replica", lambda: sb.run("ps", "--target", "sim").out.count("running") >= 1)

    (app / "broken").write_text("")
    failed = sb.run("deploy", str(app), "--target", "sim", timeout=120, check=False)
    assert failed.code == 1 and 'relation "users" already exists' in failed.err
    releases = sb.run("releases", "worker", "--json", "--target", "sim").json()["releases"]
    assert [(r["number"], r.get("status")) for r in releases] == [(1, None), (2, "release-failed")]


@pytest.fixture
def database_url() -> Iterator[str]:
    """A real PostgreSQL (Debian's `postgresql`) of this test's own on a free loopback port, trusting local
    connections, stopped by PID. As root it runs as the `postgres` user, which initdb requires."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        need("initdb", "apt-get install postgresql")
    bin_dir = found[-1].parent
    base = Path(tempfile.mkdtemp(prefix="sb-postgres-"))
    base.chmod(0o711)  # pytest's tmp dirs are 0700 root's: the postgres user could not reach them
    data = base / "data"
    data.mkdir(mode=0o700)
    uid = gid = None
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        uid, gid = entry.pw_uid, entry.pw_gid
        os.chown(data, uid, gid)
        os.chown(base, uid, gid)
    subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True, cwd=base, user=uid, group=gid)
    port = free_port()
    server = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base),
                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"], cwd=base,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=uid, group=gid)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        wait_for("postgres to accept connections", lambda: subprocess.run(
            ["psql", url, "-c", "select 1"], capture_output=True).returncode == 0, timeout=30)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def sql(url: str, query: str) -> list[str]:
    done = subprocess.run(["psql", url, "-AtX", "-v", "ON_ERROR_STOP=1", "-c", query], capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


def test_a_psql_release_line_against_a_real_postgresql(sb: Stackblaze, tmp_path: Path, database_url: str) -> None:
    """`release: psql "$DATABASE_URL" -f schema.sql` (DATABASE_URL a secret): the schema is there before the
    worker's first insert, applied once for two deploys of the same tree; a bad schema fails the deploy
    with psql's error and the old worker goes on."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "Procfile").write_text('release: psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 '
                                  '-v release="$STACKBLAZE_RELEASE" -f schema.sql\nworker: python3 -u worker.py\n')
    (app / "schema.sql").write_text("CREATE TABLE IF NOT EXISTS migrations (release int, at timestamptz);\n"
                                    "INSERT INTO migrations VALUES (:'release', clock_timestamp());\n")
    (app / "worker.py").write_text(
        "import os, subprocess, time\n"
        "subprocess.run(['psql', os.environ['DATABASE_URL'], '-X', '-v', 'ON_ERROR_STOP=1', '-c',\n"
        "    'CREATE TABLE IF NOT EXISTS boots (release int, at timestamptz); INSERT INTO boots SELECT '\n"
        "    + os.environ['STACKBLAZE_RELEASE'] + ', clock_timestamp() FROM migrations LIMIT 1'], check=True)\n"
        "print('booted', flush=True)\ntime.sleep(1e6)\n")
    sb.run("env", "set", "DATABASE_URL", "--secret", "--project", "app", stdin=database_url + "\n")
    sb.run("env", "set", f"STACKBLAZE_TEST_HOME={sb.home}", "--project", "app")
    out = sb.run("deploy", str(app), timeout=120)
    assert database_url not in out.err + out.out and "INSERT 0 1" in out.err
    wait_for("the worker's insert", lambda: sql(database_url, "SELECT count(*) FROM boots") == ["1"])
    sb.run("deploy", str(app), timeout=120)
    assert sql(database_url, "SELECT release FROM migrations") == ["1"]
    assert sql(database_url, "SELECT count(*) FROM boots b, migrations m WHERE b.at > m.at") == ["1"]
    pid = sb.replicas("worker")[0]["pid"]

    (app / "schema.sql").write_text("CREATE TABLE oops (;\n")
    failed = sb.run("deploy", str(app), timeout=120, check=False)
    print(failed.err)
    assert failed.code == 1 and 'syntax error at or near ";"' in failed.err
    assert [(r["pid"], r["release"]) for r in sb.replicas("worker")] == [(pid, 1)]
