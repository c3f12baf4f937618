"""`stackblaze doctor`: what this machine gives projects, as the daemon found it (GET /v1/doctor)."""

from __future__ import annotations

import typer

from stackblaze.cli.exit_codes import FAILED
from stackblaze.cli.options import JsonOpt, client, examples

MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def doctor(as_json: JsonOpt = False) -> None:
    """Check internal hostnames, the resolver set-up, the backing servers and sysctls.

    Exit 1 when a check failed (warnings do not count)."""
    from stackblaze.cli import render

    answer = client().request("GET", "/v1/doctor")
    if as_json:
        render.print_json(answer)
    else:
        for check in answer["checks"]:
            render.out.print(f"{MARKS.get(check['status'], check['status'])}  {check['name']}: {check['summary']}",
                             markup=False, highlight=False)
            if check.get("fix") and check["status"] != "ok":
                render.out.print(f"      fix: {check['fix']}", markup=False, highlight=False)
    if not answer["ok"]:
        raise typer.Exit(FAILED)


EXAMPLES = examples("stackblaze doctor", "stackblaze doctor --json | jq '.checks[] | select(.status != \"ok\")'")
