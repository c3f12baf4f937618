"""The daemon's RSS with the dashboard listening and idle grows by at most 10 MB (issue 12): measured
before `stackblaze dashboard`, and after its pages, parts and a log stream were each served and closed."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from tests.dashboard.conftest import open_dashboard
from tests.integration.conftest import Stackblaze, wait_for, write_project

SPEC = "project: shop\nservices:\n  - name: worker\n    start: python3 -u tick.py\n"
TICK = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n"
LIMIT = 10 << 20


def test_an_idle_dashboard_adds_at_most_10_mb_to_the_daemon(sb: Stackblaze, tmp_path: Path) -> None:
    sb.run("deploy", str(write_project(tmp_path / "app", SPEC, {"tick.py": TICK})))
    wait_for("the worker printing", lambda: "tick" in sb.run("logs", "worker", "-n", "1").out)
    daemon = psutil.Process(sb.daemon_pid())
    for _ in range(20):  # the CLI's own requests first, so the baseline is a daemon that has served some
        sb.run("ps", "--json")
    before = daemon.memory_info().rss
    dash = open_dashboard(sb)
    with dash.client() as client:
        for _ in range(20):
            for path in ("/", "/services/worker?project=shop", "/settings/drains", "/openapi.json",
                         "/services/worker?project=shop&part=chart", "/v1/ps?project=shop"):
                assert client.get(path).status_code == 200
            with client.stream("GET", "/v1/logs/stream", params={"project": "shop", "service": "worker"}) as stream:
                for _chunk in stream.iter_raw():
                    break
    time.sleep(1)  # idle: the streams' followers closed
    after = daemon.memory_info().rss
    print(f"\ndaemon RSS: {before / 2**20:.1f} MB before the dashboard, {after / 2**20:.1f} MB with it idle "
          f"after 120 page loads and 20 log streams (+{(after - before) / 2**20:.1f} MB)")
    assert after - before <= LIMIT
