"""`min_ready`, `progress_deadline` and `rolling: {max_surge, max_unavailable}`: a Deployment's rollout knobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec import load_project
from stackblaze.spec.model import Service
from stackblaze.spec.rollout import Rolling

HEAD = "project: shop\nservices:\n  - name: worker\n    start: python3 w.py\n"


def load(tmp_path: Path, text: str) -> Service:
    (tmp_path / "stackblaze.yaml").write_text(text)
    return load_project(tmp_path).services[0]


def test_defaults_are_a_deployments(tmp_path: Path) -> None:
    service = load(tmp_path, HEAD)
    assert (service.min_ready, service.progress_deadline) == (10.0, 600.0)
    assert (service.rolling.surge(4), service.rolling.unavailable(4)) == (1, 0)


def test_values_as_people_write_them(tmp_path: Path) -> None:
    service = load(tmp_path, HEAD + "    min_ready: 30s\n    progress_deadline: 15m\n"
                                    "    rolling: {max_surge: 25%, max_unavailable: 1}\n")
    assert (service.min_ready, service.progress_deadline) == (30.0, 900.0)
    assert service.rolling == Rolling(max_surge="25%", max_unavailable=1)
    assert load(tmp_path, HEAD + "    min_ready: 0\n").min_ready == 0.0


@pytest.mark.parametrize(("rolling", "replicas", "surge", "unavailable"), [
    (Rolling("25%", "25%"), 10, 3, 2),  # surge rounds up, unavailable down, as Kubernetes does
    (Rolling("25%", "25%"), 1, 1, 0),
    (Rolling(0, "50%"), 4, 0, 2),
    (Rolling("100%", 0), 3, 3, 0),
])
def test_percentages_resolve_against_the_replica_count(rolling: Rolling, replicas: int, surge: int,
                                                       unavailable: int) -> None:
    assert (rolling.surge(replicas), rolling.unavailable(replicas)) == (surge, unavailable)


@pytest.mark.parametrize(("lines", "message"), [
    ("    min_ready: 11m\n",
     "stackblaze.yaml:5: services[0].min_ready: '11m' is longer than the 600 seconds allowed (e.g. min_ready: 10s)"),
    ("    min_ready: soon\n", "stackblaze.yaml:5: services[0].min_ready: 'soon' is not a duration"),
    ("    min_ready: 1m\n    progress_deadline: 30s\n",
     "stackblaze.yaml:6: services[0].progress_deadline: '30s' must be longer than min_ready (60s)"),
    ("    progress_deadline: 2h\n",
     "stackblaze.yaml:5: services[0].progress_deadline: '2h' is longer than the 1 hour allowed"),
    ("    rolling: {max_surge: 0, max_unavailable: 0}\n",
     "stackblaze.yaml:5: services[0].rolling: max_surge and max_unavailable are both 0"),
    ("    rolling: {max_surge: lots}\n",
     "stackblaze.yaml:5: services[0].rolling.max_surge: 'lots' is not a number of replicas or a percentage "
     "(e.g. max_surge: 1 or max_surge: 25%)"),
    ("    rolling: {max_surge: 120%}\n",
     "stackblaze.yaml:5: services[0].rolling.max_surge: '120%' is not a number of replicas or a percentage"),
    ("    rolling: {max_unavailable: -1}\n",
     "stackblaze.yaml:5: services[0].rolling.max_unavailable: -1 is not a number of replicas or a percentage"),
    ("    rolling: {surge: 1}\n",
     "stackblaze.yaml:5: services[0].rolling.surge: unknown field (did you mean max_surge?)"),
    ("    rolling: 1\n", "stackblaze.yaml:5: services[0].rolling: 1 is not a mapping"),
    ("    strategy: recreate\n    rolling: {max_surge: 2}\n",
     "stackblaze.yaml:6: services[0].rolling: only applies to strategy: rolling (this service uses recreate"),
])
def test_bad_values_are_one_line_errors(tmp_path: Path, lines: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        load(tmp_path, HEAD + lines)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)
