"""YAML-level failures: syntax, tags, encoding, size, nesting, aliases and duplicate keys."""

from __future__ import annotations

import time

from stackblaze.spec import load_project

from .spec_dir import SpecDir

HEAD = "project: acme\nservices:\n  - name: worker\n    start: python worker.py\n"


def test_bad_indentation(spec_dir: SpecDir) -> None:
    spec_dir.write("project: acme\nservices:\n  - name: worker\n   start: x\n")

    assert spec_dir.error() == (
        "stackblaze.yaml:4: invalid YAML: while parsing a block collection, expected <block end>,"
        " but found '<block mapping start>' (check indentation and quoting)"
    )


def test_unclosed_quote(spec_dir: SpecDir) -> None:
    spec_dir.write("project: 'acme\n")

    assert spec_dir.error() == (
        "stackblaze.yaml:2: invalid YAML: while scanning a quoted scalar, found unexpected end of stream"
        " (check indentation and quoting)"
    )


def test_python_tags_are_refused(spec_dir: SpecDir) -> None:
    spec_dir.write("project: !!python/object/apply:os.system ['touch pwned']\nservices: []\n")

    assert spec_dir.error() == (
        "stackblaze.yaml:1: invalid YAML: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/object/apply:os.system' (remove the tag: only plain YAML values are allowed)"
    )
    assert not (spec_dir.path / "pwned").exists()


def test_a_bad_explicit_scalar_points_at_its_line(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    replicas: !!int four\n")

    assert spec_dir.error() == (
        "stackblaze.yaml:5: invalid YAML: invalid literal for int() with base 10: 'four'"
        " (quote the value or remove the tag)"
    )


def test_an_impossible_date_is_reported(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    env: {SINCE: 2024-13-45}\n")

    assert spec_dir.error() == (
        "stackblaze.yaml:5: invalid YAML: month must be in 1..12 (quote the value or remove the tag)"
    )


def test_an_int_too_long_for_python_is_reported(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    replicas: " + "9" * 5000 + "\n")

    assert spec_dir.error().startswith("stackblaze.yaml:5: invalid YAML: Exceeds the limit (4300 digits)")


def test_duplicate_keys_are_refused(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "    replicas: 2\n    replicas: 3\n")

    assert spec_dir.error() == "stackblaze.yaml:6: services[0].replicas: appears twice (first on line 5; keep one)"


def test_merge_keys_may_be_overridden(spec_dir: SpecDir) -> None:
    spec_dir.write(
        """\
        project: acme
        services:
          - &base {name: a, start: python w.py, replicas: 2}
          - {<<: *base, name: b}
        """
    )

    assert [(s.name, s.replicas) for s in spec_dir.load().services] == [("a", 2), ("b", 2)]


def test_errors_inside_an_alias_point_at_the_anchor(spec_dir: SpecDir) -> None:
    spec_dir.write("project: acme\nenv: &e {A: [1]}\nservices:\n  - {name: a, start: x, env: *e}\n")

    assert spec_dir.error().startswith("stackblaze.yaml:2: env.A: [1] is not text")


def test_non_utf8_bytes(spec_dir: SpecDir) -> None:
    (spec_dir.path / "stackblaze.yaml").write_bytes(b"project: acme\nservices:\n  - name: \xff\n")

    assert spec_dir.error() == "stackblaze.yaml:3: invalid UTF-8 at byte 34 (save the file as UTF-8)"


def test_control_characters(spec_dir: SpecDir) -> None:
    spec_dir.write("project: acme\x07\n")

    assert spec_dir.error() == (
        "stackblaze.yaml:1: invalid YAML: special characters are not allowed: '\\x07'"
        " (remove the character or write it as an escape in double quotes)"
    )


def test_empty_file(spec_dir: SpecDir) -> None:
    spec_dir.write("# nothing yet\n")

    assert spec_dir.error() == "stackblaze.yaml:1: the file is empty (start with e.g. project: my-app)"


def test_several_documents(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "---\n" + HEAD)

    assert spec_dir.error() == (
        "stackblaze.yaml:5: invalid YAML: expected a single document in the stream,"
        " but found another document (check indentation and quoting)"
    )


def test_deep_nesting_is_refused(spec_dir: SpecDir) -> None:
    spec_dir.write("project: " + "[" * 5000 + "]" * 5000 + "\n")

    assert (
        spec_dir.error()
        == "stackblaze.yaml:1: invalid YAML: nested more than 32 levels (check indentation and quoting)"
    )


def test_huge_file_is_refused(spec_dir: SpecDir) -> None:
    spec_dir.write(HEAD + "# " + "x" * 300_000 + "\n")

    assert spec_dir.error() == "stackblaze.yaml:1: is 300072 bytes, more than the 262144 allowed (trim it)"


def test_alias_bomb_is_cheap(spec_dir: SpecDir) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    spec_dir.write("\n".join(lines) + "\nproject: acme\nservices: *a9\n")
    started = time.monotonic()

    message = spec_dir.error()

    assert message == "stackblaze.yaml:1: a0: unknown field (known fields: project, env, services, targets)"
    assert time.monotonic() - started < 5


def test_alias_bomb_in_a_known_field_is_cheap(spec_dir: SpecDir) -> None:
    lines = ["project: acme", "services:", "  - name: w", "    start: x", "    env:"]
    lines += ["      A: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"      A{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    spec_dir.write("\n".join(lines) + "\n")

    message = load_project_error(spec_dir)

    assert message.startswith("stackblaze.yaml:6: services[0].env.A: ['x', 'x', 'x', 'x', ...] is not text")


def load_project_error(spec_dir: SpecDir) -> str:
    try:
        load_project(spec_dir.path)
    except Exception as error:
        return str(error)
    raise AssertionError("no error")
