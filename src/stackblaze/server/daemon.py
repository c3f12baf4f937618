"""The daemon process: state, runner connection, supervisor and the API on a 0600 unix socket.

It can be killed (-9) and started again at any time: the runner keeps the workers, the logs are the
runner's files, and on start the supervisor adopts what the runner reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

import uvicorn

from stackblaze.engine.factory import open_engine
from stackblaze.engine.names import probe as probe_names
from stackblaze.errors import DiskFullError
from stackblaze.server import daemon_log, dashboard
from stackblaze.server.app import create_app
from stackblaze.server.control import Control
from stackblaze.server.drains_api import start_drains
from stackblaze.server.home import keep_reserve, release_reserve, secure_home
from stackblaze.server.quiet_server import QuietServer
from stackblaze.server.worker_user import WorkerUsers
from stackblaze.settings import Settings, load_settings
from stackblaze.spec.targets import LOCAL
from stackblaze.state import daemon_lock
from stackblaze.state.cron import CronStore
from stackblaze.state.secrets import SecretBox
from stackblaze.state.store import Store
from stackblaze.state.usage import UsageStore

log = logging.getLogger("stackblaze.daemon")


def bind_private_socket(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


async def serve(settings: Settings) -> None:
    try:
        store = Store(settings.state_db, SecretBox(settings.secret_key), limits=settings.events)
    except DiskFullError:  # its -wal and -shm need room: the reserve is for this
        if not release_reserve(settings):
            raise
        store = Store(settings.state_db, SecretBox(settings.secret_key), limits=settings.events)
    keep_reserve(settings)
    control = Control(settings=settings, store=store)
    # Before the engine opens (it reconciles at once): the answer decides <name>.internal or IP URLs. ~60 ms.
    control.names = await asyncio.to_thread(probe_names)
    log.info("internal hostnames: %s (%s)", control.names.mode or "unavailable", control.names.reason)
    running = await open_engine(settings, store=store, hooks=control.hooks(LOCAL), usage=UsageStore(store),
                                runs=CronStore.of(store))
    control.supervisor = running.engine
    await control.connect_stored()
    await asyncio.to_thread(control.backing.sync_all_hosts)  # after the names probe: the files replicas mount
    control.autoscaler.sync()  # the autoscaled workers' loops, from their saved state
    log.info("daemon %d ready (home %s, time scale %g)", os.getpid(), settings.home, settings.time_scale)

    stop_all = False
    server: QuietServer | None = None

    def on_shutdown(all_too: bool) -> None:
        nonlocal stop_all
        stop_all = all_too
        assert server is not None
        server.stop()

    app = create_app(control, on_shutdown=on_shutdown)
    drains = await start_drains(app, control)
    sock = bind_private_socket(str(settings.api_socket))
    config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False,
                            timeout_graceful_shutdown=1, date_header=False, server_header=False)
    server = QuietServer(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_shutdown, False)
    try:
        await server.serve(sockets=[sock])
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(settings.api_socket)
        if stop_all:
            log.info("stopping every worker and the runner")
            control.record_stop_all()
            await running.stop_all()
        await control.autoscaler.close()
        await dashboard.close(app)  # its TCP listener, if `stackblaze dashboard` started one
        await drains.close()
        await control.close_targets()
        await running.close()
        store.close()
        log.info("daemon %d stopped", os.getpid())


def main() -> int:
    os.umask(0o077)  # what the daemon, and the runner it starts, create is theirs alone (see server/home.py)
    settings = load_settings()
    secure_home(settings, worker_gid=WorkerUsers().home_gid())
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    daemon_log.install(settings.daemon_log)  # a full disk loses log lines (counted), never the daemon
    lock_path = settings.run_dir / "daemon.lock"
    try:
        lock = daemon_lock.acquire(lock_path)  # held (open) for the process's life: one daemon per home
    except daemon_lock.LockHeld as held:
        who = f"pid {held.pid}" if held.pid else "another process"
        print(f"stackblaze daemon: already running ({who} holds {lock_path}); not starting a second one",
              file=sys.stderr)
        return 1
    log.info("daemon %d holds %s (fd %d)", os.getpid(), lock_path, lock)
    try:
        asyncio.run(serve(settings))
    except Exception:
        log.exception("daemon failed")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
