"""`stackblaze queue-metrics image`: build the queue-metrics server's image (what KEDA's metrics-api triggers read
on a cluster) from this stackblaze and push it, printing it by digest for a Deployment to pin."""

from __future__ import annotations

from typing import Annotated

import typer

from stackblaze.cli.options import JsonOpt, examples

queue_metrics_app = typer.Typer(no_args_is_help=True, help=(
    "The queue-metrics server a cluster's autoscaled celery/rq/bullmq/dramatiq/redis-list workers are scaled by."))


@queue_metrics_app.command("image", epilog=examples(
    "stackblaze queue-metrics image --registry registry.example.com/acme",
    "stackblaze queue-metrics image --registry 127.0.0.1:5000/acme --insecure-registry --base localhost/python-base"))
def image(
    registry: Annotated[str, typer.Option("--registry", help="Where to push: host[:port][/path].",
                                          show_default=False)],
    insecure: Annotated[bool, typer.Option("--insecure-registry", help="Push over plain HTTP.")] = False,
    base: Annotated[str | None, typer.Option(
        "--base", help="The Python base image (default: STACKBLAZE_BASE_IMAGE_PYTHON, else python:3.11-slim, as "
                       "the project's Python images).", show_default=False)] = None,
    builder: Annotated[str | None, typer.Option("--builder", help="buildah, podman or docker (default: the first "
                                                                   "found).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the server's image from this stackblaze (its wheel and pinned dependencies in a venv) and push it;
    prints `<registry>/stackblaze-queue-metrics@sha256:...`. The builder's output goes to stderr."""
    from stackblaze.build.queue_metrics_image import publish_queue_metrics_image
    from stackblaze.cli import render

    reference = publish_queue_metrics_image(
        registry, insecure=insecure, base=base, builder=builder, where="--registry",
        output=lambda line: render.err.print(f"    {line}", markup=False, highlight=False))
    if as_json:
        render.print_json({"image": reference, "digest": reference.rsplit("@", 1)[1]})
    else:
        render.out.print(reference, markup=False)
