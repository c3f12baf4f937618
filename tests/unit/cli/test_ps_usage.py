"""`ps`'s CPU and MEM columns, as `pm2 ls` shows them: a running replica's figures, `-` for one that does
not run (or is not sampled yet), `n/a` for a pod on a Kubernetes target (metrics-server is not read)."""

from __future__ import annotations

from typing import Any

import pytest

from stackblaze.cli.render import ps_table


def replica(number: int, state: str, cpu: float | None, memory: int | None, pod: str | None = None) -> dict[str, Any]:
    return {"replica": number, "state": state, "release": 1, "pid": None if pod else 4000 + number, "pod": pod,
            "uptime": 12.0, "restart_count": 0, "last_exit": None, "cpu": cpu, "memory": memory}


def rows(capsys: pytest.CaptureFixture[str], replicas: list[dict[str, Any]]) -> dict[str, list[str]]:
    ps_table({"project": "meters", "services": [{"service": "worker", "running_flag": True, "desired": 3,
                                                 "running": 2, "release": 1, "start": "python3 w.py",
                                                 "replicas": replicas}]})
    lines = capsys.readouterr().out.splitlines()
    header = next(line.split() for line in lines if line.startswith("REPLICA"))
    found = {}
    for line in lines:
        if line.startswith("worker."):
            cells = line.split()
            at = header.index("CPU")
            single = cells[at + 1] in ("-", "n/a")  # else a number and its unit
            found[cells[0]] = [cells[at], cells[at + 1] if single else " ".join(cells[at + 1:at + 3])]
    return found


def test_local_replicas_show_percent_and_binary_units(capsys: pytest.CaptureFixture[str]) -> None:
    shown = rows(capsys, [replica(1, "running", 0.31, 50_541_363), replica(2, "running", 187.0, 3 << 30),
                          replica(3, "waiting", None, None)])
    assert shown == {"worker.1": ["0.3%", "48.2 MiB"], "worker.2": ["187.0%", "3.0 GiB"], "worker.3": ["-", "-"]}


def test_a_kubernetes_target_says_not_available(capsys: pytest.CaptureFixture[str]) -> None:
    shown = rows(capsys, [replica(1, "running", None, None, pod="meters-worker-6d9f-x2"),
                          replica(2, "waiting", None, None, pod="meters-worker-6d9f-y7")])
    assert shown == {"worker.1": ["n/a", "n/a"], "worker.2": ["-", "-"]}
