"""Read a YAML file into plain data plus the line of every field path, failing with one-line errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from stackblaze.spec.messages import fail, join, one_line

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32
# Lines are only needed down to services[0].env.KEY; deeper values are rejected whole.
_LINE_DEPTH = 4
_MERGE_TAG = "tag:yaml.org,2002:merge"
_LAST_SEGMENT = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])$|^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its data and where each field path starts (1-based lines)."""

    label: str
    data: object
    lines: Mapping[str, int]
    key_lines: Mapping[str, int]

    def line(self, path: str, *, key: bool = False) -> int:
        """Return the line of the value at path (of its key when key=True and the key has a line)."""
        lines = self.key_lines if key and path in self.key_lines else self.lines
        # Defaults, and paths inside aliases or merges, have no line of their own: use the nearest
        # enclosing one. Trimming `.field` / `[index]` is the fast way; odd keys fall back to a scan.
        while path not in lines:
            trimmed = _LAST_SEGMENT.sub("", path)
            if trimmed == path:
                known = [p for p in lines if path.startswith(p) and (p == "" or path[len(p)] in ".[")]
                return lines[max(known, key=len)] if known else 1
            path = trimmed
        return lines[path]

    def at(self, path: str, *, line_of: str | None = None, key: bool = False) -> str:
        """Return the `file:line: path` prefix of an error about path, located at line_of (default path)."""
        line = self.line(path if line_of is None else line_of, key=key)
        return f"{self.label}:{line}: {path}" if path else f"{self.label}:{line}"


def read_document(path: Path, *, label: str) -> Document:
    """Parse the YAML file at path with safe tags only; every failure is a SpecError starting `label:`."""
    text = read_text(path, label=label, max_bytes=MAX_BYTES)
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        key_lines: dict[str, int] = {}
        if node is not None:
            _Walker(loader, label, lines, key_lines).walk(node, "", 0)
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = ", ".join(part for part in (error.context, error.problem) if part) or type(error).__name__
        fix = "remove the tag: only plain YAML values are allowed" if "constructor for the tag" in problem else None
        fix = "quote the value or remove the tag" if isinstance(error, _BadScalarError) else fix
        raise _invalid(label, mark.line + 1 if mark else 1, problem, fix) from None
    except yaml.reader.ReaderError as error:
        line = text[: error.position].count("\n") + 1
        problem = f"{error.reason}: {chr(error.character)!r}"
        raise _invalid(label, line, problem, "remove the character or write it as an escape in double quotes") from None
    except (yaml.YAMLError, RecursionError) as error:
        raise _invalid(label, 1, str(error) or type(error).__name__) from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise fail(f"{label}:1", "the file is empty (start with e.g. project: my-app)")
    return Document(label=label, data=data, lines=lines, key_lines=key_lines)


def read_text(path: Path, *, label: str, max_bytes: int) -> str:
    """Return the UTF-8 text of a small file; every failure is a SpecError starting `label:`."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise fail(f"{label}:1", f"cannot be read: {error.strerror} (check that it is a readable file)") from None
    if len(raw) > max_bytes:
        raise fail(f"{label}:1", f"is {len(raw)} bytes, more than the {max_bytes} allowed (trim it)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise fail(f"{label}:{line}", f"invalid UTF-8 at byte {error.start} (save the file as UTF-8)") from None


def _invalid(label: str, line: int, problem: str, fix: str | None = None) -> Exception:
    return fail(f"{label}:{line}", f"invalid YAML: {problem} ({fix or 'check indentation and quoting'})")


class _BadScalarError(ConstructorError):
    """A scalar whose tag or form Python cannot turn into a value (e.g. `!!int x`, 2024-13-45)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and reports bad scalars (e.g. `!!int x`) with their line."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as error:  # int("9"*5000), !!bool maybe, !!timestamp 2020-13-45 ...
            message = one_line(str(error)) or type(error).__name__
            raise _BadScalarError(None, None, message, node.start_mark) from None


class _Walker:
    """Records the line of each field path and rejects duplicate keys, which PyYAML silently merges."""

    def __init__(self, loader: _Loader, label: str, lines: dict[str, int], key_lines: dict[str, int]) -> None:
        self._loader = loader
        self._label = label
        self._lines = lines
        self._key_lines = key_lines
        self._seen: set[int] = set()

    def walk(self, node: Node, path: str, depth: int) -> None:
        self._lines.setdefault(path, node.start_mark.line + 1)
        # An alias is the same node object: walking it once keeps alias bombs cheap.
        if depth >= _LINE_DEPTH or id(node) in self._seen:
            return
        self._seen.add(id(node))
        if isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, f"{path}[{index}]", depth + 1)
        elif isinstance(node, MappingNode):
            self._walk_mapping(node, path, depth)

    def _walk_mapping(self, node: MappingNode, path: str, depth: int) -> None:
        first_lines: dict[object, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # complex keys are rejected when constructed; merged keys may override
            key = self._loader.construct_object(key_node)
            child = join(path, key)
            line = key_node.start_mark.line + 1
            try:
                first = first_lines.get(key)
            except TypeError:  # unhashable key: construction reports it
                continue
            if first is not None:
                raise fail(f"{self._label}:{line}: {child}", f"appears twice (first on line {first}; keep one)")
            first_lines[key] = line
            self._key_lines[child] = line
            self.walk(value_node, child, depth + 1)
