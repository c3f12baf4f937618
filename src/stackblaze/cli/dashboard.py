"""`stackblaze dashboard`: ask the daemon for its dashboard listener and open (or print) its URL."""

from __future__ import annotations

from typing import Annotated

import typer

from stackblaze.cli.options import JsonOpt, client, examples


def dashboard(
    no_open: Annotated[bool, typer.Option("--no-open", help="Print the URL; do not open a browser.")] = False,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; beyond loopback it needs --token.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: a free one).")] = 0,
    token: Annotated[str | None, typer.Option(
        "--token", envvar="STACKBLAZE_DASHBOARD_TOKEN",
        help="The token to require (16+ characters; default: a random one).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The web dashboard: services, replicas, live logs, usage charts, drains. Every request needs the token
    in the URL printed here (it then lives in a cookie)."""
    from stackblaze.cli import render

    answer = client().request("POST", "/v1/dashboard", body={"host": host, "port": port, "token": token})
    if as_json:
        render.print_json(answer)
        return
    where = "listening" if answer.get("started") else "already listening"
    render.out.print(f"dashboard {where} on {answer['host']}:{answer['port']}; open:", markup=False)
    render.out.print(f"    {answer['url']}", markup=False, soft_wrap=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        render.out.print(f"note: {host} is reachable beyond this machine over plain HTTP: the token is the only "
                         "guard", markup=False)
    if not no_open:
        import webbrowser

        if not webbrowser.open(answer["url"]):
            render.out.print("no browser found here: open the URL above", markup=False)


EXAMPLES = examples("stackblaze dashboard", "stackblaze dashboard --no-open --port 8765",
                    "stackblaze dashboard --host 0.0.0.0 --token \"$(openssl rand -hex 24)\"")
