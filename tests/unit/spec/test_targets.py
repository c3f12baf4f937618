"""`targets:` in stackblaze.yaml and the --target/--context/--namespace/--registry flags: where a project runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackblaze.errors import SpecError, UserError
from stackblaze.spec import Project, load_project
from stackblaze.spec.targets import Target, resolve_target, split_key

HEAD = "project: shop\nservices:\n  - name: worker\n    start: python3 w.py\n"


def load(tmp_path: Path, text: str) -> Project:
    (tmp_path / "stackblaze.yaml").write_text(HEAD + text)
    return load_project(tmp_path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_a_kubernetes_target_as_written(tmp_path: Path) -> None:
    project = load(tmp_path, "targets:\n  prod:\n    kind: kubernetes\n    context: prod-eu\n"
                             "    namespace: shop-prod\n    registry: registry.example.com/shop\n")
    prod = project.targets["prod"]
    assert (prod.kind, prod.context, prod.namespace, prod.registry) == (
        "kubernetes", "prod-eu", "shop-prod", "registry.example.com/shop")
    assert prod.store_key("shop") == "shop@prod"
    assert split_key("shop@prod") == ("shop", "prod") and split_key("shop") == ("shop", "local")


def test_no_targets_means_local_only(tmp_path: Path) -> None:
    project = load(tmp_path, "")
    assert project.targets == {}
    assert resolve_target(project.targets, None) == Target()
    assert Target().store_key("shop") == "shop"


def test_a_fake_target_with_behaviours(tmp_path: Path) -> None:
    project = load(tmp_path, "targets:\n  sim:\n    kind: fake\n    behaviours:\n"
                             "      python3 w.py: {exits_after: 2s, exit_code: 3, lines: [boom]}\n")
    assert project.targets["sim"].behaviours == {"python3 w.py": {"exits_after": 2.0, "exit_code": 3,
                                                                   "lines": ["boom"]}}


@pytest.mark.parametrize(("text", "message"), [
    ("targets: [prod]\n", "stackblaze.yaml:5: targets: ['prod'] is not a mapping"),
    ("targets:\n  Prod: {kind: kubernetes, registry: r.example.com}\n",
     "stackblaze.yaml:6: targets.Prod: 'Prod' is not a target name"),
    ("targets:\n  local: {kind: kubernetes}\n", "'local' is the built-in target"),
    ("targets:\n  prod: {kind: nomad}\n", "stackblaze.yaml:6: targets.prod.kind: 'nomad': a target's kind is "
                                          "kubernetes or fake (e.g. kind: kubernetes)"),
    ("targets:\n  prod: {kind: kubernetes, contxt: a}\n", "targets.prod.contxt: unknown field (did you mean context?)"),
    ("targets:\n  prod: {kind: kubernetes}\n", "a kubernetes target needs a registry to push images to"),
    ("targets:\n  prod: {kind: kubernetes, registry: 'https://r.example.com'}\n",
     "is not a registry address: host[:port][/path], without https:// or a tag"),
    ("targets:\n  prod: {kind: fake, namespace: Shop_Prod}\n", "'Shop_Prod' is not a DNS-1123 label"),
    ("targets:\n  sim:\n    kind: fake\n    behaviours: {w: {exit_code: three}}\n",
     "targets.sim.behaviours.w.exit_code: 'three' is not valid here (e.g. exit_code: 3)"),
])
def test_a_bad_target_is_one_line_naming_the_place(tmp_path: Path, text: str, message: str) -> None:
    found = error(tmp_path, text)
    assert message in found
    assert "\n" not in found


def test_flags_override_the_spec(tmp_path: Path) -> None:
    project = load(tmp_path, "targets:\n  prod: {kind: kubernetes, context: a, registry: r.example.com/shop}\n")
    prod = resolve_target(project.targets, "prod", context="b", namespace="shop-b")
    assert (prod.name, prod.context, prod.namespace, prod.registry) == ("prod", "b", "shop-b", "r.example.com/shop")


def test_flags_alone_name_a_kubernetes_target_after_the_context() -> None:
    target = resolve_target({}, None, context="kind-dev", registry="127.0.0.1:5000")
    assert (target.name, target.kind, target.store_key("shop")) == ("kind-dev", "kubernetes", "shop@kind-dev")


@pytest.mark.parametrize(("name", "flags", "message"), [
    ("stage", {}, "--target: 'stage' is not a target of this project (targets: local, prod;"),
    ("local", {"context": "a"}, "--target local: --context, --namespace and --registry apply to a kubernetes target"),
    (None, {"context": "a"}, "a kubernetes target needs a registry"),
    ("prod", {"namespace": "-x"}, "namespace: '-x' is not a DNS-1123 label"),
])
def test_bad_flags_are_user_errors(tmp_path: Path, name: str | None, flags: dict[str, str], message: str) -> None:
    project = load(tmp_path, "targets:\n  prod: {kind: kubernetes, registry: r.example.com}\n")
    with pytest.raises(UserError) as caught:
        resolve_target(project.targets, name, **flags)
    assert message in str(caught.value)
