"""How pytest-xdist shares the suite between its workers (`pytest -n 2 --dist loadgroup`, as .ci/run runs it):
each test belongs to a group, and a group runs on one worker, in order.

- A test file is a group of its own: its module fixtures (a rabbitmq-server, a browser) start once.
- A folder whose fixtures outlive a file is one group: the control plane (package scope), the autoscale
  suites' brokers and `npm ci` of BullMQ (session scope).
- Every test that runs backing services (redis-server or postgres on 127.77.x.y at their standard ports) is in
  one group, so no two run at once: one of them holds 0.0.0.0:6379 on purpose to see a deploy refused, which
  would refuse another's deploy too, and the examples' `cache` services all listen on port 6379.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent
FOLDERS = ("e2e/k8s_controlplane", "integration/autoscale_kinds", "integration/autoscale_readers",
           "integration/autoscale_wake")
BACKING = ("e2e/internal", "e2e/brokers", "integration/test_backing_services.py", "integration/test_doctor.py")


def group_of(path: Path) -> str:
    where = path.relative_to(TESTS).as_posix()
    if any(where == b or where.startswith(b + "/") for b in BACKING):
        return "backing-services"
    return next((f for f in FOLDERS if where.startswith(f + "/")), where)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the marks into the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of(item.path)))
