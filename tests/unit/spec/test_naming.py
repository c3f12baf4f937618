"""The project a directory belongs to, read the cheap way, agrees with the name `deploy` gives it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.errors import SpecError
from stackblaze.spec import load_project
from stackblaze.spec.naming import find_project, read_project_name

SERVICES = "services:\n  - name: worker\n    start: python3 w.py\n"


@pytest.mark.parametrize("head", [
    "project: shop\n", "project: 'shop'\n", 'project: "shop"  # the shop\n', "# comment\nproject:   shop\n",
    "---\nproject: shop\n", "{project: shop, services: [{name: worker, start: python3 w.py}]}\n",
    "base: &name shop\nproject: *name\n",
])
def test_the_cheap_read_names_the_project_as_deploy_does(tmp_path: Path, head: str) -> None:
    spec = tmp_path / "stackblaze.yaml"
    spec.write_text(head if head.startswith("{") else head + SERVICES)
    if head.startswith("base:"):
        spec.write_text("x-base: &name shop\nproject: *name\n" + SERVICES)
        with pytest.raises(SpecError):  # deploy refuses the unknown key; the name is still read the same way
            load_project(tmp_path)
        assert read_project_name(spec) == "shop"
        return
    assert read_project_name(spec) == load_project(tmp_path).name == "shop"


def test_walking_up_the_nearest_spec_or_procfile_wins(tmp_path: Path) -> None:
    (tmp_path / "stackblaze.yaml").write_text("project: outer\n" + SERVICES)
    inner = tmp_path / "services" / "My Worker_2"
    (inner / "src").mkdir(parents=True)
    (inner / "Procfile").write_text("worker: python3 w.py\n")
    found = find_project(inner / "src")
    assert found is not None and found.name == "my-worker-2" == load_project(inner).name
    assert found.found_in == inner / "Procfile"
    top = find_project(tmp_path / "services")
    assert top is not None and top.name == "outer" and top.found_in == tmp_path / "stackblaze.yaml"


def test_a_bad_project_name_fails_as_deploy_fails(tmp_path: Path) -> None:
    spec = tmp_path / "stackblaze.yaml"
    spec.write_text("project: My_Shop\n" + SERVICES)
    with pytest.raises(SpecError) as cheap:
        read_project_name(spec)
    with pytest.raises(SpecError) as loaded:
        load_project(tmp_path)
    assert str(cheap.value) == f"{spec}:1: project: 'My_Shop' is not a valid name: use 1-40 lowercase letters, " \
        "digits and '-', starting with a letter (e.g. project: my-shop)"
    assert str(loaded.value).removeprefix("stackblaze.yaml") == str(cheap.value).removeprefix(str(spec))
    spec.write_text(SERVICES)
    with pytest.raises(SpecError, match=r"stackblaze.yaml:1: no project: key \(add one, e.g. project: my-app\)"):
        read_project_name(spec)
