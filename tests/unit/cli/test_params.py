"""The CLI's plain parameters are converted without pydantic, as typer would convert them."""

from __future__ import annotations

import ast
import subprocess
import sys
from typing import Annotated

import typer
from typer.testing import CliRunner

from stackblaze.cli import params


def test_installed_on_this_typer() -> None:
    """When typer's internals change, this fails instead of every command quietly getting 90 ms slower."""
    assert params.install() is True


def test_plain_values_convert_and_bad_ones_say_why() -> None:
    params.install()
    app = typer.Typer()
    seen: dict[str, object] = {}

    @app.command()
    def run(name: Annotated[str | None, typer.Argument()] = None, n: int = 3,
            replica: Annotated[int | None, typer.Option(min=1)] = None, ratio: float = 0.5,
            flag: bool = False, field: Annotated[list[str] | None, typer.Option()] = None) -> None:
        seen.update(name=name, n=n, replica=replica, ratio=ratio, flag=flag, field=field)

    runner = CliRunner()
    ok = runner.invoke(app, ["x", "--n", "4", "--replica", "2", "--ratio", "1.5", "--flag", "--field", "a=1",
                             "--field", "b=2"])
    assert ok.exit_code == 0, ok.output
    assert seen == {"name": "x", "n": 4, "replica": 2, "ratio": 1.5, "flag": True, "field": ["a=1", "b=2"]}
    assert runner.invoke(app, []).exit_code == 0 and seen["name"] is None and seen["field"] is None
    bad = runner.invoke(app, ["--n", "four"])
    assert bad.exit_code == 2 and "'four' is not a whole number" in bad.output
    low = runner.invoke(app, ["--replica", "0"])
    assert low.exit_code == 2 and "0 is out of range (1 or more)" in low.output


def heavy_imports(*argv: str) -> list[str]:
    """The heavy packages a real `stackblaze ARGV...` process imported before it exited."""
    code = (f"import sys; sys.argv = ['stackblaze', *{list(argv)!r}]\n"
            "from stackblaze.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] if not m.startswith('stackblaze.') else m for m, v in sys.modules.items()"
            " if v is not None and (m.split('.')[0] in ('pydantic', 'yaml', 'httpx', 'rich')"
            " or m.startswith('stackblaze.build'))}), file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return list(ast.literal_eval(proc.stderr.strip().splitlines()[-1]))


def test_commands_import_only_what_they_use() -> None:
    assert heavy_imports("logs", "--help") == []
    assert heavy_imports("--help") == []
    # every parameter parsed (a str, an int with a minimum, a list), then the --since error: no pydantic or yaml
    assert heavy_imports("logs", "worker", "-n", "5", "--replica", "2", "--field", "a=1", "--since", "x") == ["rich"]
