"""Bad input through the real CLI: one line naming the place, the value and the fix; exit 2; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import Stackblaze, write_project

HEAD = "project: shop\nservices:\n  - name: worker\n    start: python3 w.py\n"
CASES = {
    "bad yaml": ("project: shop\nservices: [\n", "stackblaze.yaml:3: invalid YAML"),
    "unknown field": (HEAD + "    replica: 2\n", "stackblaze.yaml:5: services[0].replica: unknown field"),
    "wrong type": (HEAD + "    replicas: four\n",
                   "stackblaze.yaml:5: services[0].replicas: 'four' is not a whole number (e.g. replicas: 4)"),
    "negative replicas": (HEAD + "    replicas: -1\n", "stackblaze.yaml:5: services[0].replicas: -1 must be 0 or more"),
    "duplicate names": (HEAD + "  - name: worker\n    start: python3 w.py\n",
                        "stackblaze.yaml:5: services[1].name: 'worker'"),
    "bad signal": (HEAD + "    stop_signal: SIGFOO\n",
                   "stackblaze.yaml:5: services[0].stop_signal: 'SIGFOO' is not a signal"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_spec_exits_2_with_one_line(sb: Stackblaze, tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    project = write_project(tmp_path / "app", text)
    result = sb.run("deploy", str(project), check=False)
    assert result.code == 2
    message = result.err.strip().splitlines()[-1]
    assert message.startswith("error: " + expected), message
    assert "Traceback" not in result.err + result.out
    assert len([line for line in result.err.splitlines() if line.startswith("error:")]) == 1


def test_wrong_arguments_get_clear_errors(sb: Stackblaze, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", HEAD, {"w.py": "import time\ntime.sleep(1e6)\n"})
    sb.run("deploy", str(project))
    bad_number = sb.run("scale", "worker", "--replicas", "four", check=False)
    assert bad_number.code == 2
    assert bad_number.err.strip() == "error: --replicas: 'four' is not a whole number (e.g. --replicas 4)"
    missing = sb.run("scale", "worker", check=False)
    assert missing.code == 2 and missing.err.count("\n") == 1 and "--replicas" in missing.err
    unknown = sb.run("scale", "nope", "--replicas", "2", check=False)
    assert unknown.code == 3
    assert unknown.err.strip() == "error: service 'nope' not found in project 'shop' (services: worker)"
    since = sb.run("logs", "worker", "--since", "yesterday", check=False)
    assert since.code == 2 and since.err.startswith("error: --since: 'yesterday'")
    for result in (bad_number, unknown, since):
        assert "Traceback" not in result.err
