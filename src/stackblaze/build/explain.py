"""The lines of a failed install or build command's output that say why it failed (one pattern table per tool)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

LIMIT = 15
WIDTH = 300  # a longer line (pip's list of versions, pipenv's hashes) is cut: its start says what it is


@dataclass(frozen=True)
class Rules:
    cause: tuple[str, ...]  # a line that says why the command failed
    noise: tuple[str, ...] = ()  # a line never shown, not even as context; wins over `cause`


# Regular expressions matched (re.match) against each line without its colours. Every row applies to every
# output: the command is any shell line, and a pip install can run a compiler, an npm install a Python build.
RULES: dict[str, Rules] = {
    "pip": Rules(
        cause=(r"\s*ERROR:", r"\s*Failed to build ", r"\s*error: [a-z]+(-[a-z]+)+$", r"\s*× ", r"\s*│ exit code: ",
               r"\s*╰─> ", r"\s*(Expected|Got) +sha256 "),
        noise=(r"\s*--hash=", r"\s*╰─> (\[\d+ lines of output\]|See above for output)", r"\s*\[end of output\]",
               r"\s*note: This error originates from a subprocess", r"\s*with pip\.$",  # the note, wrapped by rich
               r"\s*Looking in (indexes|links): ", r"\s*[━╸╺\s]+[\d.]+/[\d.]+ [kMG]?B"),
    ),
    "pipenv": Rules(
        cause=(r"Package installation failed", r"Your Pipfile\.lock\b", r"\[\w+\]: \S"),
        noise=(r"\[\w+\]:\s{2,}",),  # pipenv's own traceback, one `[SomeException]:   File ...` line per frame
    ),
    "poetry": Rules(cause=(
        r"\s*PEP517 build of a dependency failed", r"\s*Backend subprocess exited when trying to invoke",
        r".*version solving failed", r".*changed significantly since poetry\.lock",
        r"\s*Unable to find installation candidates", r"\s*Could not find a matching version of package",
    )),
    "uv": Rules(
        cause=(r"\s*(error|cause|help): ", r"\s*hint: .* was included because", r"\s*[├╰]─▶ "),
        noise=(r"\s*\[(stdout|stderr)\]$",),
    ),
    "npm": Rules(
        cause=(r"npm (ERR!|error) \S",),
        noise=(r"npm (warn|WARN|notice)\b", r"npm (ERR!|error)( 404)?$",
               r"npm (ERR!|error) (A complete log of this run|For a full report see|/\S+-report\.txt$)",
               r"npm (ERR!|error) 404 (Note that you can also install|tarball, folder, http url)",
               # `npm ci` out of sync prints its whole usage: options, their help, aliases
               r"npm (ERR!|error) (Usage:|Options:|aliases:|Run \"npm help|npm \S+$|\[-|\s+-|\s{3,}\S)"),
    ),
    "yarn": Rules(
        cause=(r"error ", r"Exit code: \d+", r"Output:$", r"➤ YN(?!0000)\d{4}: "),
        noise=(r"(warning|info) ", r"\[\d/\d\] ", r"yarn install v",
               # berry: YN0000 is progress, these others are info or warnings; YN0028 quotes the lockfile's diff
               r"➤ YN0000: ", r"➤ YN00(02|07|13|32|60|61|76|85|86): ", r"➤ YN0028: │ [+-]"),
    ),
    "pnpm": Rules(
        cause=(r".*\bERR_PNPM_\w+", r".*\bELIFECYCLE\b", r"This error happened while installing"),
        noise=(r"\s*WARN\s", r"Progress: resolved ", r"Packages: [+-]", r"[+-]{5,}$"),
    ),
    "go": Rules(
        cause=(r"go: (?!downloading |finding |extracting )", r"\S+\.go:\d+(:\d+)?: "),
        noise=(r"go: (downloading|finding|extracting) ",),
    ),
    "bundler": Rules(
        cause=(r"Could not find gem ", r"Could not find .* in (any of the sources|locally installed gems|cached gems)",
               r"An error occurred while installing ", r"Gem::(\w+::)*\w+Error: ", r"extconf failed",
               r"Could not reach host ", r"Bundler could not find compatible versions",
               r"You are trying to install in deployment mode"),
        noise=(r"Don't run Bundler as root", r"installing your bundle as root will", r"users on this machine\.$",
               r"\s*/\S+\.rb:\d+:in ", r"`?(block (\(\d+ levels\) )?in )?[\w?!]+'$"),  # Ruby's backtrace, wrapped
    ),
    # An error line outside a traceback: Node's `Error: ENOENT ...` or `TypeError: ...`, a Python exception.
    "node": Rules(
        cause=(r"\s*([A-Za-z_]\w*\.)*([A-Z]\w*)?(Error|Exception)( \[\w+\])?: ",),
        noise=(r"\s*[{}()\[\]]+,?$", r"Node\.js v\d"),
    ),
    # Compilers that package builds run: pip and gem build C extensions, node-gyp builds addons.
    "cc": Rules(cause=(r"\s*\S+:\d+:\d+: (fatal )?error: ", r"\s*collect2: error", r"\s*\S*ld: cannot find ",
                       r"\s*make(\[\d+\])?: \*\*\* ")),
}

_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\))")
_CAUSE = re.compile("|".join(f"(?:{p})" for rules in RULES.values() for p in rules.cause))
_NOISE = re.compile("|".join(f"(?:{p})" for rules in RULES.values() for p in rules.noise))
# A Python traceback, also inside another tool's output (pip's `[58 lines of output]`, poetry's `| ` gutter):
# the text before `Traceback` is that prefix, and the traceback's own lines start with it.
_TRACEBACK = re.compile(r"(?P<prefix>.*?)Traceback \(most recent call last\):$")
_EXCEPTION = re.compile(r"([A-Za-z_]\w*\.)*[A-Z]\w*(:( .*)?)?$")  # `KeyError: 'x'`, `pkg.mod.Error`, `SystemExit`
_FRAME = re.compile(r"\s*File( \"|$)")
_CARETS = re.compile(r"\s*[\^~]+$")
_TRACEBACK_SPAN = 2000  # lines searched for a traceback's exception line


def explain(lines: Sequence[str], *, context: int = 2, limit: int = LIMIT) -> list[str]:
    """The lines of a failed command's output that say why, in order, each once, at most `limit`: the tools'
    error lines and a traceback's last frame and exception, each with up to `context` lines before and after."""
    text = [clean(line) for line in lines]
    anchors, hidden = _tracebacks(text)
    anchors.update(number for number, line in enumerate(text)
                   if number not in hidden and _CAUSE.match(line) and not _NOISE.match(line))
    hidden.update(number for number, line in enumerate(text) if _NOISE.match(line))
    causes = _first_of_each(text, sorted(anchors))
    if len(causes) > limit:  # the first errors are often the cause, the last ones the tool's summary: keep both
        last = limit // 3
        causes = causes[:limit - last] + causes[len(causes) - last:]
    chosen = set(causes)
    shown = {text[number].strip() for number in chosen}
    # Context, nearest first: the first line around every cause, then the second, while the limit allows.
    around = [_around(text, number, hidden, context) for number in causes]
    for rank in range(context):
        for sides in around:
            for near in sides[rank]:
                if len(chosen) < limit and near not in chosen and text[near].strip() not in shown:
                    chosen.add(near)
                    shown.add(text[near].strip())
    return [_cut(text[number]) for number in sorted(chosen)]


def clean(line: str) -> str:
    """A line as a terminal shows it: no colours, only what follows the last carriage return (progress bars)."""
    line = _ANSI.sub("", line.rstrip("\r\n"))
    return line.rsplit("\r", 1)[-1].rstrip()


def _around(text: list[str], number: int, hidden: set[int], context: int) -> list[list[int]]:
    """Per rank 1..context, the lines that far before and after line `number`. A blank line does not count;
    a noise line (or a traceback's inner frame) ends the context: what lies beyond is about something else."""
    ranks: list[list[int]] = [[] for _ in range(context)]
    for step in (-1, 1):
        near, rank = number + step, 0
        while rank < context and 0 <= near < len(text) and near not in hidden:
            if not _blank(text[near]):
                ranks[rank].append(near)
                rank += 1
            near += step
    return ranks


def _tracebacks(text: list[str]) -> tuple[set[int], set[int]]:
    """Each traceback's last frame (with its code line) and its exception line; and its other lines."""
    picked: set[int] = set()
    inside: set[int] = set()
    for start, line in enumerate(text):
        header = _TRACEBACK.match(line)
        if header is None:
            continue
        prefix = header["prefix"]
        frame: int | None = None
        for number in range(start + 1, min(len(text), start + _TRACEBACK_SPAN)):
            if _TRACEBACK.match(text[number]):
                break  # a traceback without its exception line (cut short): the next one is searched on its own
            # A line without the prefix is the rest of a long frame line that a printer wrapped (pipenv, uv).
            prefixed = text[number].startswith(prefix)
            rest = text[number][len(prefix):] if prefixed else text[number]
            if _FRAME.match(rest):
                frame = number
            elif prefixed and _EXCEPTION.match(rest):
                if frame is not None:
                    picked.update(_frame_lines(text, frame, number))
                picked.add(number)
                inside.update(range(start + 1, number))
                break
    return picked, inside - picked


def _frame_lines(text: list[str], frame: int, end: int) -> list[int]:
    """The frame's `File ...` line, its rest if a printer wrapped it, and its code line (not the carets)."""
    numbers = [frame]
    while numbers[-1] + 1 < end and not re.search(r"line \d+", text[numbers[-1]]) and len(numbers) < 3:
        numbers.append(numbers[-1] + 1)
    code = numbers[-1] + 1
    if code < end and not _CARETS.match(text[code]) and not _FRAME.match(text[code]):
        numbers.append(code)
    return numbers


def _first_of_each(text: list[str], numbers: list[int]) -> list[int]:
    """Only the first of lines that read the same (pip prints its summary twice)."""
    seen: set[str] = set()
    kept = []
    for number in numbers:
        if text[number].strip() not in seen:
            seen.add(text[number].strip())
            kept.append(number)
    return kept


def _blank(line: str) -> bool:
    return not line.strip(" \t|│")  # poetry and pip draw a gutter down the left of a build's output


def _cut(line: str) -> str:
    return line if len(line) <= WIDTH else line[:WIDTH - 1] + "…"
