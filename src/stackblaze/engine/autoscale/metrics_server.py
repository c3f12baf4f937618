"""The queue-metrics server: `python -m stackblaze.engine.autoscale.metrics_server`. It answers KEDA's
metrics-api triggers with the work of one service's queues, read by the same readers as the local autoscaler
and decided on the same figure: the mean of SAMPLES_PER_POLL reads spread over the poll (sampling.py says why
one instant read is the wrong figure), read in the background, so a request costs no broker round trip.

GET /metrics/<service> -> {"work": W, "ready", "due", "in_flight" (the last complete poll's means), "samples",
"at" (when that poll ended), "waiting" (ready + due of the latest single read: a wake from 0 must not wait for a
poll's mean), "oldest_age", "latency" (decide.latency_ratio of that age and the service's latency_slo, 0 without
one: the latency trigger's usage ratio), "latest": {the latest read}, "warnings": [...]}. Until a first poll is
complete, the means are of the reads so far.

Its config is a JSON file (on Kubernetes a Secret, since a queue URL may carry a password), named by
STACKBLAZE_QUEUE_METRICS_CONFIG: {"services": {"<service>": {"kind": ..., "url": ..., "names": [...],
"poll": 5.0, "latency_slo": 30.0, "tolerance": 0.1}}} (the last two optional); a service without "poll" is read
over STACKBLAZE_QUEUE_METRICS_POLL seconds (default 5, the spec's). Once the latest read failed the answer is 503,
which KEDA counts as a failed read (its fallback acts after 3 in a row), until a read succeeds again. In a
cluster, a service whose config has "pods" (its worker pods' labels; rq and celery) also gets its pods' deletion
costs written once per poll (deletion_cost.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from stackblaze.engine.autoscale.decide import latency_ratio
from stackblaze.engine.autoscale.readers import Reader, open_reader
from stackblaze.engine.autoscale.sampling import MeanWork, mean_work, sample_count, sample_work
from stackblaze.engine.autoscale.work import ReadError, Work
from stackblaze.errors import StackblazeError
from stackblaze.spec.autoscale import DEFAULT_TOLERANCE, QUEUE_KINDS, Queues, is_tolerance

CONFIG_ENV = "STACKBLAZE_QUEUE_METRICS_CONFIG"
POLL_ENV = "STACKBLAZE_QUEUE_METRICS_POLL"
DEFAULT_POLL = 5.0  # the spec's default poll (spec/autoscale.py)
PORT = 8080
# KEDA's HTTP client gives up after 3 s by default (KEDA_HTTP_DEFAULT_TIMEOUT): a read must answer before. Only
# a request that finds no read at all yet (the server just started) waits for one, at most this long.
READ_TIMEOUT = 2.5
MIN_INTERVAL = 0.02  # seconds between two reads at least: a tiny poll must not turn the sampler into a busy loop

log = logging.getLogger("stackblaze.queue_metrics")


@dataclass(frozen=True)
class Served:
    """One service's queues and the poll its mean is taken over (its worker's `autoscale.poll`)."""

    queues: Queues
    poll: float = DEFAULT_POLL
    latency_slo: float | None = None  # its worker's autoscale.latency_slo, and the tolerance the ratio passes
    tolerance: float = DEFAULT_TOLERANCE


def _seconds(value: object, where: str, *, most: float | None = 3600, example: str = "5.0") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SystemExit(f"{where}: {value!r} is not a number of seconds (e.g. {example})")
    try:
        seconds = float(value)
    except ValueError:
        raise SystemExit(f"{where}: {value!r} is not a number of seconds (e.g. {example})") from None
    if not seconds > 0 or (most is not None and seconds > most):
        span = f"between 0 and {most:g} seconds" if most is not None else "a number of seconds above 0"
        raise SystemExit(f"{where}: {value!r} is not {span} (e.g. {example})")
    return seconds


def load_config(text: str, where: str, *, default_poll: float = DEFAULT_POLL) -> dict[str, Served]:
    """service -> its queues and poll, from the config's JSON; a bad config is one line naming the file and the
    field."""
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
        poll = _seconds(raw["poll"], f"{where}: services.{name}.poll") if "poll" in raw else default_poll
        slo = (_seconds(raw["latency_slo"], f"{where}: services.{name}.latency_slo", most=None, example="30.0")
               if "latency_slo" in raw else None)
        tolerance = raw.get("tolerance", DEFAULT_TOLERANCE)
        if not is_tolerance(tolerance):
            raise SystemExit(f"{where}: services.{name}.tolerance: {tolerance!r} is not a fraction from 0 to below 1 "
                             f"(e.g. 0.1)")
        out[str(name)] = Served(Queues(raw["kind"], raw["url"], tuple(str(n) for n in raw["names"])), poll, slo,
                                float(tolerance))
    return out


class Sampler:
    """One service's reads: SAMPLES_PER_POLL per poll, back to back, keeping the last complete poll's mean and
    the latest read (a Work, or the error of a read that failed). `url` (the broker's) names it in an error the
    reader did not translate; `clock`/`sleep` are one monotonic clock and a
    sleep on it; `wall` gives the epoch time readers reckon due jobs and ages from."""

    def __init__(self, name: str, reader: Reader, poll: float, *, url: str = "",
                 latency_slo: float | None = None, tolerance: float = DEFAULT_TOLERANCE,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.name = name
        self.poll = poll
        self.count = sample_count(poll, 1.0, MIN_INTERVAL)
        self.latency_slo, self.tolerance = latency_slo, tolerance
        self._reader, self._url = reader, url
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self.latest: Work | StackblazeError | None = None
        self.latest_at: float | None = None
        self.mean: MeanWork | None = None  # the last complete poll's; None after a failed read (it is stale)
        self.mean_at: float | None = None
        self._partial: list[Work] = []  # the reads of the poll going on
        self._said: str | None = None  # the error last logged: a broker down is said once, not at every read
        self.first = asyncio.Event()  # set at the first read, ok or not

    async def _read(self) -> Work:
        try:
            try:
                work = await self._reader.read(self._wall())
            except (OSError, ValueError) as exc:  # what a reader did not translate is still a failed read
                raise ReadError.reading(self._url, exc) from None
        except StackblazeError as error:
            self.latest, self.latest_at = error, self._wall()
            self.first.set()
            raise
        self.latest, self.latest_at = work, self._wall()
        self._partial.append(work)
        self.first.set()
        return work

    async def poll_once(self) -> None:
        """One poll: its reads, then its mean kept; it returns a whole poll after it began (a failed read ends
        the poll early: the next begins one read interval later)."""
        began = self._clock()
        self._partial = []
        try:
            mean = await sample_work(self._read, poll=self.poll, count=self.count, clock=self._clock,
                                     sleep=self._sleep)
        except StackblazeError as error:
            self.mean = self.mean_at = None
            if str(error) != self._said:
                log.warning("%s: %s", self.name, error)
                self._said = str(error)
            await self._sleep(self.poll / self.count)
            return
        if self._said is not None:
            log.info("%s: read again", self.name)
            self._said = None
        self.mean, self.mean_at = mean, self._wall()
        for warning in mean.warnings:  # a count of 0 with a warning is not an idle queue: say it where it shows
            log.warning("%s: %s", self.name, warning)
        rest = began + self.poll - self._clock()
        if rest > 0:
            await self._sleep(rest)

    async def run(self) -> None:
        while True:
            await self.poll_once()

    def answer(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) as GET /metrics/<service> answers them now."""
        latest = self.latest
        if latest is None:
            return 503, {"error": f"{self.name}: no read of its queues yet"}
        if isinstance(latest, StackblazeError):
            return 503, {"error": str(latest)}
        mean = self.mean or mean_work(self._partial or [latest], self.poll / self.count)
        return 200, {"work": round(mean.total, 2), "ready": mean.ready, "due": mean.due, "in_flight": mean.in_flight,
                     "samples": mean.samples, "poll": self.poll, "at": self.mean_at or self.latest_at,
                     "waiting": latest.ready + latest.due, "oldest_age": mean.oldest_age,
                     "latency": latency_ratio(self.latency_slo, mean.oldest_age, self.tolerance),
                     "warnings": list(mean.warnings), "latest": {**latest.to_dict(), "at": self.latest_at}}


def create_app(services: Mapping[str, Served], *, timeout: float = READ_TIMEOUT) -> FastAPI:
    """The app over these services' queues: one reader and one background sampler per service, started with
    the app and stopped (the readers closed) at its end."""
    samplers: dict[str, Sampler] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        readers = {name: open_reader(served.queues, timeout=timeout) for name, served in services.items()}
        for name, served in services.items():
            samplers[name] = Sampler(name, readers[name], served.poll, url=served.queues.url,
                                     latency_slo=served.latency_slo, tolerance=served.tolerance)
        tasks = [asyncio.create_task(sampler.run(), name=f"sample {name}") for name, sampler in samplers.items()]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task
            await asyncio.gather(*(reader.close() for reader in readers.values()), return_exceptions=True)

    app = FastAPI(title="stackblaze queue-metrics", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"services": sorted(services)}

    @app.get("/metrics/{service}")
    async def metrics(service: str) -> JSONResponse:
        sampler = samplers.get(service)
        if sampler is None:
            return JSONResponse({"error": f"no service {service!r} here (services: {', '.join(sorted(services))})"},
                                status_code=404)
        if not sampler.first.is_set():  # just started: the first read is on its way
            with suppress(TimeoutError):
                await asyncio.wait_for(sampler.first.wait(), timeout)
        status, body = sampler.answer()
        return JSONResponse(body, status_code=status)

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
    raw_poll = os.environ.get(POLL_ENV)
    default_poll = _seconds(raw_poll, POLL_ENV) if raw_poll else DEFAULT_POLL
    host = os.environ.get("STACKBLAZE_QUEUE_METRICS_HOST", "0.0.0.0")  # all of the pod's addresses: KEDA calls in
    port = os.environ.get("STACKBLAZE_QUEUE_METRICS_PORT", str(PORT))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"STACKBLAZE_QUEUE_METRICS_PORT={port!r} is not a TCP port (e.g. {PORT})")
    services = load_config(text, path, default_poll=default_poll)
    # In a cluster, it also writes its rq/celery workers' pod deletion costs: idle pods go first on a scale-down.
    from stackblaze.engine.autoscale.deletion_cost import with_pod_costs

    app = with_pod_costs(create_app(services), text, path, default_poll=default_poll)
    uvicorn.run(app, host=host, port=int(port), log_level="info", access_log=False)


if __name__ == "__main__":
    main()
