"""Any input gives a Project or one SpecError line starting `stackblaze.yaml:<line>: `, never anything else."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stackblaze.errors import SpecError
from stackblaze.spec import Project, load_project

ONE_LINE_ERROR = re.compile(r"stackblaze\.yaml:\d+: \S")
NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
keys = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
junk = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


def field(*plausible: object, other: st.SearchStrategy[object] = junk) -> st.SearchStrategy[object]:
    """Mostly plausible values for a field, sometimes other (junk by default)."""
    values: st.SearchStrategy[object] = st.sampled_from(plausible)
    return st.integers(0, 9).flatmap(lambda n: other if n == 0 else values)


service = st.fixed_dictionaries(
    {"name": field("worker", "beat", "Worker", "a-", "x" * 41, "")},
    optional={
        "type": field("worker", "cron", "web"),
        "root": field(".", "sub", "sub/", "..", "/etc", "sub/../..", "missing", "link"),
        "start": field("python worker.py", "", " "),
        "build": field("make", None),
        "replicas": st.integers(-3, 1003) | field(0, 1, 2),
        "env": st.dictionaries(
            field("A", "B_2", "2X", "a b", "", other=keys), field("x", 1, True, 1.5, None), max_size=3
        ),
        "stop_signal": field("TERM", "SIGTERM", "sigint", "KILL", "SIGFOO", 15, 9, 0, "15"),
        "shutdown_grace": field("30s", "1m30s", "500ms", "601s", "0", "10m", "1h", 30, 0.5, -1),
        "strategy": field("rolling", "recreate", "blue"),
        "replica": junk,  # a typo of replicas
    },
)
spec_shaped = st.fixed_dictionaries(
    {"project": field("acme", "Acme", "my-app"), "services": st.lists(service, max_size=3)},
    optional={
        "env": st.dictionaries(field("REDIS_URL", "x y", other=keys), field("redis://", 6379, False), max_size=3),
    },
)


def load(content: bytes) -> Project | None:
    """Write content as stackblaze.yaml in a fresh project and load it; a SpecError is checked and swallowed."""
    with tempfile.TemporaryDirectory() as tmp:
        project_dir = Path(tmp) / "project"
        (project_dir / "sub").mkdir(parents=True)
        (project_dir / "link").symlink_to(tmp)
        (project_dir / "stackblaze.yaml").write_bytes(content)
        (project_dir / "Procfile").write_text("worker: python w.py\nbeat: celery beat\n")
        try:
            return load_project(project_dir)
        except SpecError as error:
            message = str(error)
            assert ONE_LINE_ERROR.match(message), message
            assert len(message.splitlines()) == 1, message
            return None


def check(project: Project | None) -> None:
    if project is None:
        return
    assert NAME.fullmatch(project.name)
    assert project.services
    for service in project.services:
        assert NAME.fullmatch(service.name)
        assert 0 <= service.replicas <= 1000
        assert 0 < service.shutdown_grace <= 600
        assert service.start.strip()
        assert all(isinstance(value, str) for value in service.env.values())


def dump(document: object) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode()


@settings(max_examples=300, deadline=None)
@given(junk)
def test_arbitrary_documents(document: object) -> None:
    check(load(dump(document)))


@settings(max_examples=300, deadline=None)
@given(spec_shaped)
def test_spec_shaped_documents(document: dict[str, object]) -> None:
    check(load(dump(document)))


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_arbitrary_text_and_bytes(content: str | bytes) -> None:
    check(load(content.encode(errors="surrogatepass") if isinstance(content, str) else content))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "project: acme\n",
                "services:\n",
                "  - name: w\n",
                "    start: x\n",
                "  - ",
                "&a ",
                "*a\n",
                "<<: *a\n",
                "{",
                "}",
                "[",
                "]\n",
                ": ",
                "- ",
                "!!str ",
                "!!int ",
                "? ",
                "'",
                '"',
                "#",
                "\t",
                "\n",
                "    env: {A: 1}\n",
                "x",
            ]
        ),
        max_size=30,
    )
)
def test_yaml_like_fragments(parts: list[str]) -> None:
    check(load("".join(parts).encode()))
