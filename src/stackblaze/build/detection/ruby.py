"""Ruby: `bundle install` with the gems in `$DEPS/bundle`."""

from __future__ import annotations

import re

from stackblaze.build.detection.tree import (
    MAX_FILE_BYTES,
    Parts,
    Request,
    Tree,
    first_line,
    present,
    require_tool,
    resolve,
)
from stackblaze.build.toolchains import Interpreter, match_prefix, match_specifier
from stackblaze.spec.document import read_text

_GEMFILE_RUBY = re.compile(r"""\s*ruby\s*\(?\s*["']([^"']+)["']""")


def detect_ruby(tree: Tree) -> Parts:
    request = None
    if found := first_line(tree, tree.root, ".ruby-version"):
        text, number = found
        label = tree.label(".ruby-version")
        request = Request(text.removeprefix("ruby-"), f"{label}:{number}", label, label)
    else:
        label = tree.label("Gemfile")
        gemfile = read_text(tree.dir / "Gemfile", label=label, max_bytes=MAX_FILE_BYTES)
        for number, line in enumerate(gemfile.splitlines(), start=1):
            if match := _GEMFILE_RUBY.match(line):
                request = Request(match.group(1).strip(), f"{label}:{number}", label, f"the ruby line of {label}")
                break
    ruby = resolve(tree, "ruby", request, match_ruby)
    parts = Parts(resolved=ruby, package_manager="bundler")
    parts.asked(request)
    parts.tool_version = require_tool(tree, "bundler", asked_by=tree.label("Gemfile"), fix="gem install bundler")
    parts.env = {"BUNDLE_PATH": "$DEPS/bundle", "BUNDLE_WITHOUT": "development:test"}
    parts.install = "BUNDLE_FROZEN=true bundle install" if tree.has("Gemfile.lock") else "bundle install"
    gemspecs = sorted(path.name for path in tree.dir.glob("*.gemspec"))
    parts.lockfiles = (*present(tree.dir, "Gemfile", "Gemfile.lock", ".ruby-version"), *gemspecs)
    return parts


def match_ruby(request: str, installed: tuple[Interpreter, ...], default: Interpreter | None) -> Interpreter | None:
    """`3.2` -> the highest 3.2.x; RubyGems' `~> 3.2` is PEP 440's `~=3.2`; `>= 3.1` a range."""
    if request.startswith("~>"):
        return match_specifier("~=" + request[2:].strip(), installed, prefer=default)
    if request.startswith("= "):
        return match_prefix(request[2:].strip(), installed)
    if request[:1] in "<>!":
        return match_specifier(request.replace(" ", ""), installed, prefer=default)
    return match_prefix(request, installed)
