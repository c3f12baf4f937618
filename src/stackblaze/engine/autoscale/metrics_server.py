"""The queue-metrics server: `python -m stackblaze.engine.autoscale.metrics_server`. It answers KEDA's
metrics-api trigger with the work of one service's queues, read by the same readers as the local autoscaler:
GET /metrics/<service> -> {"work": W, "ready": ..., "due": ..., "in_flight": ..., "warnings": [...]}.

Its config is a JSON file (on Kubernetes a Secret, since a queue URL may carry a password), named by
STACKBLAZE_QUEUE_METRICS_CONFIG: {"services": {"<service>": {"kind": ..., "url": ..., "names": [...]}}}. A broker
that cannot be read answers 503, which KEDA counts as a failed read (its fallback acts after 3 in a row).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from stackblaze.engine.autoscale.readers import Reader, open_reader
from stackblaze.engine.autoscale.work import ReadError
from stackblaze.spec.autoscale import QUEUE_KINDS, Queues

CONFIG_ENV = "STACKBLAZE_QUEUE_METRICS_CONFIG"
PORT = 8080
# KEDA's HTTP client gives up after 3 s by default (KEDA_HTTP_DEFAULT_TIMEOUT): a read must answer before.
READ_TIMEOUT = 2.5

log = logging.getLogger("stackblaze.queue_metrics")


def load_config(text: str, where: str) -> dict[str, Queues]:
    """service -> its queues, from the config's JSON; a bad config is one line naming the file and the field."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise SystemExit(f"{where}: not JSON ({error})") from None
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise SystemExit(f"{where}: no 'services' mapping (e.g. {{\"services\": {{\"worker\": {{\"kind\": "
                         f"\"celery\", \"url\": \"redis://cache.internal:6379/0\", \"names\": [\"celery\"]}}}}}})")
    out = {}
    for name, raw in services.items():
        if (not isinstance(raw, dict) or raw.get("kind") not in QUEUE_KINDS or not isinstance(raw.get("url"), str)
                or not isinstance(raw.get("names"), list) or not raw["names"]):
            raise SystemExit(f"{where}: services.{name}: not {{kind, url, names}} with kind one of "
                             f"{', '.join(QUEUE_KINDS)}")
        out[str(name)] = Queues(raw["kind"], raw["url"], tuple(str(n) for n in raw["names"]))
    return out


def create_app(services: Mapping[str, Queues], *, timeout: float = READ_TIMEOUT) -> FastAPI:
    """The app over these services' queues: one reader per service, opened at start and closed at the end."""
    readers: dict[str, Reader] = {}
    locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for name, queues in services.items():
            readers[name] = open_reader(queues, timeout=timeout)
            locks[name] = asyncio.Lock()  # a reader is one connection: one read at a time
        try:
            yield
        finally:
            await asyncio.gather(*(reader.close() for reader in readers.values()), return_exceptions=True)

    app = FastAPI(title="stackblaze queue-metrics", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"services": sorted(services)}

    @app.get("/metrics/{service}")
    async def metrics(service: str) -> JSONResponse:
        reader = readers.get(service)
        if reader is None:
            return JSONResponse({"error": f"no service {service!r} here (services: {', '.join(sorted(services))})"},
                                status_code=404)
        try:
            async with locks[service]:
                work = await reader.read(time.time())
        except ReadError as error:
            log.warning("%s: %s", service, error)
            return JSONResponse({"error": str(error)}, status_code=503)
        for warning in work.warnings:  # a count of 0 with a warning is not an idle queue: say it where it shows
            log.warning("%s: %s", service, warning)
        return JSONResponse(work.to_dict())

    return app


def main() -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise SystemExit(f"{CONFIG_ENV} is not set: point it at the queues' JSON config "
                         f"(e.g. {CONFIG_ENV}=/etc/stackblaze/queue-metrics/queues.json)")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise SystemExit(f"{CONFIG_ENV}={path}: {error.strerror or error}") from None
    host = os.environ.get("STACKBLAZE_QUEUE_METRICS_HOST", "0.0.0.0")  # all of the pod's addresses: KEDA calls in
    port = os.environ.get("STACKBLAZE_QUEUE_METRICS_PORT", str(PORT))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"STACKBLAZE_QUEUE_METRICS_PORT={port!r} is not a TCP port (e.g. {PORT})")
    uvicorn.run(create_app(load_config(text, path)), host=host, port=int(port), log_level="info", access_log=False)


if __name__ == "__main__":
    main()
