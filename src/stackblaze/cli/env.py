"""`stackblaze env list|set|unset`: a project's variables, before its first deploy too (env, then deploy,
as every PaaS documents it: a worker never starts once without its broker URL)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from stackblaze.cli.options import JsonOpt, ProjectOpt, TargetOpt, client, examples, project_here
from stackblaze.errors import UserError

app = typer.Typer(no_args_is_help=True, help="Project environment variables (secrets never printed).")
ServiceOpt = Annotated[str | None, typer.Option("--service", "-s", help="Only for this service.")]


@app.command("list", epilog=examples("stackblaze env list", "stackblaze env list --project shop --json"))
def env_list(as_json: JsonOpt = False, project: ProjectOpt = None,
            target: TargetOpt = None) -> None:
    """Every variable; secret values are shown masked."""
    from stackblaze.cli import render

    result = client(project_here(project), target).request("GET", "/v1/env")
    if as_json:
        render.print_json(result)
        return
    for var in result["env"]:
        scope = f"  [{var['service']}]" if var["service"] else ""
        render.out.print(f"{var['key']}={var['value']}{scope}{'  (secret)' if var['secret'] else ''}", markup=False)


def read_pairs(items: list[str]) -> dict[str, str]:
    from stackblaze.spec import fields

    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        fields.check_env_key(key, where="env set", assign="=")
        if not sep:  # KEY alone: the value comes from a prompt or stdin, never from argv (ps, history)
            value = typer.prompt(key, hide_input=True) if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
            if not value:  # an empty pipe is a mistake far more often than a wish for ""
                raise UserError(f"env set {key}: no value on stdin (pipe one, e.g. printf %s \"$TOKEN\" | "
                                f"stackblaze env set {key} --secret; an empty value is {key}=)")
        values[key] = fields.check_env_value(value, where=f"env set {key}", key=key)
    fields.check_env_total(values, where="env set")  # the daemon checks the whole environment it makes
    return values


@app.command("set", epilog=examples("stackblaze env set WORKER_CONCURRENCY=5",
                                    "printf %s \"$TOKEN\" | stackblaze env set API_TOKEN --secret",
                                    "stackblaze env set QUEUE=email --service worker",
                                    "cd my-app && stackblaze env set REDIS_URL=redis://127.0.0.1:6379/0 && "
                                    "stackblaze deploy"))
def env_set(
    pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE ... (KEY alone reads the value from stdin).")],
    secret: Annotated[bool, typer.Option("--secret", help="Encrypt at rest; never print it back.")] = False,
    service: ServiceOpt = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Set variables (restarts what uses them).

    The affected replicas restart (rolling); before the first deploy, the values wait for it."""
    from stackblaze.cli import render

    body = {"set": read_pairs(pairs), "secret": secret, "service": service}
    result = client(project_here(project), target).request("POST", "/v1/env", body=body)
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"set {', '.join(result['set'])}; {_restarting(result)}", markup=False)


@app.command("unset", epilog=examples("stackblaze env unset WORKER_CONCURRENCY",
                                      "stackblaze env unset QUEUE --service worker"))
def env_unset(
    keys: Annotated[list[str], typer.Argument(help="KEY ...")],
    service: ServiceOpt = None,
    as_json: JsonOpt = False,
    project: ProjectOpt = None,
    target: TargetOpt = None,
) -> None:
    """Remove variables (restarts what used them).

    The affected replicas restart (rolling)."""
    from stackblaze.cli import render

    result = client(project_here(project), target).request("POST", "/v1/env", body={"unset": keys, "service": service})
    if as_json:
        render.print_json(result)
    else:
        render.out.print(f"unset {', '.join(result['unset'])}; {_restarting(result)}", markup=False)


def _restarting(result: dict[str, Any]) -> str:
    if result.get("deployed") is False:
        return f"project {result['project']} is not deployed yet: its first deploy uses them"
    return f"restarting {', '.join(result['restarted']) or 'nothing'}"
