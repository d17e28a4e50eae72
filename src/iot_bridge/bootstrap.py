"""The composition root: builds the bridge from the environment and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from iot_bridge.adapters.store import EventStore
from iot_bridge.config.sources import EnvSettings, load_active_config
from iot_bridge.entrypoints.http_api import create_app
from iot_bridge.errors import BridgeError
from iot_bridge.logs import get_logger
from iot_bridge.service.board import Board, BoardService, stored_session_events
from iot_bridge.service.bridge import Bridge
from iot_bridge.service.machines import IngestorDirectory
from iot_bridge.service.state_out import StateOut

log = get_logger(__name__)

SHUTDOWN_STEP_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the bridge owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What ``iot-bridge run`` was asked for, after the environment's defaults."""

    env: EnvSettings
    config_file: Path | None
    data_dir: Path
    host: str
    port: int


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the HTTP listener ourselves so a busy port is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise BridgeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(
    options: ServiceOptions,
    *,
    on_ready: Callable[[Bridge, str], None] | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run the bridge until SIGINT/SIGTERM (or ``bridge.stop()``), then shut down cleanly."""
    store = await asyncio.to_thread(EventStore.open, options.data_dir)
    try:
        loaded = load_active_config(
            data_dir=options.data_dir, config_file=options.config_file, env=options.env
        )
        bridge = Bridge(
            env=options.env,
            config=loaded.config,
            config_source=loaded.source,
            last_config_update=loaded.last_update,
            store=store,
            data_dir=options.data_dir,
        )
        sock = bind_socket(options.host, options.port)
    except BaseException:
        store.close()
        raise
    if not options.env.api_token:
        log.warning(
            "api_token_missing",
            message="BRIDGE_API_TOKEN is not set: anyone who can reach the HTTP API can "
            "replace the configuration. Set it in production.",
        )
    host, port = sock.getsockname()[:2]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    directory = IngestorDirectory(bridge.ingestor)
    board = BoardService(Board(directory), bridge.feed, clock=bridge.now)
    state_out = StateOut(
        feed=bridge.feed,
        directory=directory,
        config=lambda: bridge.config,
        client=lambda: bridge.mqtt,
        clock=bridge.now,
    )
    app = create_app(bridge, api_token=options.env.api_token, board=board)
    server = _Server(
        uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
    )
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
    for sig in signals:  # before start: a SIGTERM during start-up is a clean stop too
        loop.add_signal_handler(sig, bridge.stop)
    server_task: asyncio.Task[None] | None = None
    try:
        await bridge.start()
        board.start(stored_session_events(await asyncio.to_thread(store.recent_events, 1000)))
        state_out.start()
        server_task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
        log.info("http_listening", url=url, docs=f"{url}/docs")
        if on_ready is not None:
            on_ready(bridge, url)
        await bridge.run()
    finally:
        await board.close()  # ends the open streams, so the HTTP server can stop at once
        await state_out.close()
        if server_task is not None:
            server.should_exit = True
            try:
                await asyncio.wait_for(server_task, SHUTDOWN_STEP_TIMEOUT_S)
            except TimeoutError:
                log.warning("http_shutdown_timeout", seconds=SHUTDOWN_STEP_TIMEOUT_S)
            except Exception as err:  # a failing HTTP server must not block the rest
                log.error("http_server_failed", error=str(err))
        await bridge.close()
        sock.close()
        for sig in signals:
            loop.remove_signal_handler(sig)
        log.info("bridge_stopped")
