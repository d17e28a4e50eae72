"""The composition root: the one place that builds adapters and hands them to the service.

``build_bridge`` turns the effective config into the concrete adapters
(``EventStore`` the outbox, ``MqttClient`` the message source through
``mqtt_source``, ``OdooSender`` the event sender through ``odoo_sender``,
``SystemClock``, the data dir's config repository) and the ``Bridge`` that
uses them through the ports of ``service/ports.py``. ``serve`` runs it with
the HTTP app (``entrypoints/http_api.create_app``) on ``HttpServer`` until
SIGINT/SIGTERM.
The service never names a concrete class: a broker switch or a new Odoo
section goes through the two factories.
"""

from __future__ import annotations

import asyncio
import functools
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iot_bridge.adapters.store import EventStore
from iot_bridge.config.model import MqttSection, OdooSection
from iot_bridge.config.shard import Shard
from iot_bridge.config.sources import (
    DataDirConfigRepository,
    EnvSettings,
    LoadedConfig,
    effective_max_connections,
    load_active_config,
)
from iot_bridge.entrypoints.http_api import create_app
from iot_bridge.errors import BridgeError, DiskFullError
from iot_bridge.logs import get_logger, task_stack
from iot_bridge.net.http.server import HEALTH_RESERVE, LISTEN_BACKLOG, ASGIApp, HttpServer
from iot_bridge.net.mqtt import MqttClient, MqttSettings, WillMessage
from iot_bridge.net.mqtt.protocol_memory import FileProtocolMemory, ProtocolMemory
from iot_bridge.runtime import heap
from iot_bridge.runtime.clock import SystemClock
from iot_bridge.service.bridge import Bridge
from iot_bridge.service.ingest.pipeline import (
    DISK_FULL_RETRY_CAP_S,
    DISK_FULL_RETRY_FIRST_S,
    RECEIVE_MAXIMUM,
    CommitAbandoned,
)
from iot_bridge.service.ports import (
    Clock,
    ConfigRepository,
    EventSenderFactory,
    LastWill,
    MessageSourceFactory,
    Outbox,
)
from iot_bridge.service.views.board import Board, BoardService, stored_session_events
from iot_bridge.service.views.machines import IngestorDirectory
from iot_bridge.service.views.state_out import StateOut

if TYPE_CHECKING:
    from iot_bridge.adapters.odoo import OdooSender

log = get_logger(__name__)

# The HTTP server's whole stop: its grace for requests in flight (HTTP_GRACEFUL_SHUTDOWN_S),
# then closing what is left. Not the bridge's SHUTDOWN_STEP_TIMEOUT_S (5 s, one step of its stop).
HTTP_STOP_TIMEOUT_S = 10.0
# The heap is settled (``runtime/heap.py``) this long after the start: not in its way.
HEAP_SETTLE_AFTER_S = 10.0
# Requests in flight at the stop get this long to finish (within HTTP_STOP_TIMEOUT_S).
HTTP_GRACEFUL_SHUTDOWN_S = 5.0
# File descriptors kept for everything but HTTP clients (the store's files and threads, the
# MQTT and Odoo connections, the logs) when the HTTP connection cap is fitted under the limit.
FD_HEADROOM = 64


def log_task_dump() -> None:
    """Log every asyncio task and where it waits (``task_dump``); the SIGUSR1 handler.

    For a process that does not stop or answer: ``kill -USR1 <pid>`` shows which
    await each task of the bridge is stuck on, without stopping it.
    """
    tasks = [
        {"name": task.get_name(), "done": task.done(), "stack": task_stack(task)}
        for task in asyncio.all_tasks()
    ]
    log.warning("task_dump", tasks=sorted(tasks, key=lambda t: str(t["name"])))


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What ``iot-bridge run`` was asked for, after the environment's defaults."""

    env: EnvSettings
    config_file: Path | None
    data_dir: Path
    host: str
    port: int


def mqtt_settings(
    section: MqttSection, will: LastWill | None = None, *, shard: Shard | None = None
) -> MqttSettings:
    """The MQTT client's settings from the config's ``mqtt`` section, state out's will and
    ``BRIDGE_SHARD``.

    With a shard the client id is ``<client_id>-shard<i>``: every instance is
    pushed the same config, and each needs a persistent session of its own.
    """
    return MqttSettings(
        host=section.broker,
        port=section.port,
        username=section.username or None,
        password=section.password or None,
        client_id=section.client_id if shard is None else shard.client_id(section.client_id),
        keepalive_s=section.keepalive,
        use_tls=section.use_tls,
        ca_file=section.ca_file,
        tls_insecure=section.tls_insecure,
        clean_start=False,
        receive_maximum=RECEIVE_MAXIMUM,
        will=None if will is None else WillMessage(will.topic, will.payload, qos=1, retain=True),
    )


def mqtt_source(
    section: MqttSection,
    subscriptions: frozenset[str],
    will: LastWill | None = None,
    *,
    shard: Shard | None = None,
    protocol_memory: ProtocolMemory | None = None,
) -> MqttClient:
    """The message source factory: an MQTT client for ``section`` (not yet running).

    ``protocol_memory``: the data dir's record of 3.1.1-only brokers.
    """
    return MqttClient(
        mqtt_settings(section, will, shard=shard),
        subscriptions=subscriptions,
        protocol_memory=protocol_memory,
    )


def odoo_sender(section: OdooSection | None) -> OdooSender | None:
    """The event sender factory: a sender for ``section``; None means local-only mode.

    Raises ``ValueError`` when the section cannot be used.
    """
    if section is None:
        return None
    # Imported here: a bridge without Odoo (local-only mode) never loads the HTTP client.
    from iot_bridge.adapters.odoo import OdooSender  # noqa: PLC0415

    if section.request_format == "batch":
        from iot_bridge.adapters.odoo_batch import OdooBatchSender  # noqa: PLC0415

        return OdooBatchSender(
            base_url=section.base_url, database=section.database, api_key=section.api_key
        )
    return OdooSender(
        base_url=section.base_url,
        database=section.database,
        api_key=section.api_key,
        request_format=section.request_format,
    )


def build_bridge(
    *,
    env: EnvSettings,
    loaded: LoadedConfig,
    outbox: Outbox,
    config_repository: ConfigRepository,
    source_factory: MessageSourceFactory,
    sender_factory: EventSenderFactory,
    clock: Clock,
    after_push: Callable[[], None] | None = None,
) -> Bridge:
    """The one place a ``Bridge`` is made: from the adapters of its ports.

    ``service_bridge`` passes the real ones (SQLite, MQTT, Odoo, the system
    clock); the unit tests pass in-memory fakes (``tests/unit/service/fakes.py``).
    ``after_push`` runs after every applied config push.
    """
    bridge = Bridge(
        env=env,
        loaded=loaded,
        outbox=outbox,
        config_repository=config_repository,
        source_factory=source_factory,
        sender_factory=sender_factory,
        clock=clock,
    )
    if after_push is not None:
        bridge.configs.add_listener(after_push)
    return bridge


def service_bridge(options: ServiceOptions, store: EventStore) -> Bridge:
    """The bridge of ``iot-bridge run`` on ``store``, with the active config (file,
    persisted or environment)."""
    return build_bridge(
        env=options.env,
        loaded=load_active_config(
            data_dir=options.data_dir, config_file=options.config_file, env=options.env
        ),
        outbox=store,
        config_repository=DataDirConfigRepository(options.data_dir),
        source_factory=functools.partial(
            mqtt_source,
            shard=options.env.shard,
            protocol_memory=FileProtocolMemory(options.data_dir),
        ),
        sender_factory=odoo_sender,
        clock=SystemClock(),
        after_push=heap.settle,  # after a push: the old devices are garbage
    )


def add_views(bridge: Bridge) -> BoardService:
    """The board and the MQTT state out, as tasks of the bridge off its feed."""
    directory = IngestorDirectory(bridge.ingestor)
    board = BoardService(Board(directory), bridge.feed, clock=bridge.pipeline.now)
    state_out = StateOut(
        feed=bridge.feed,
        directory=directory,
        config=lambda: bridge.configs.config,
        client=lambda: bridge.link.source,
        clock=bridge.pipeline.now,
        shard=bridge.configs.env.shard,
        health=bridge.status.health,
    )
    bridge.configs.add_listener(state_out.config_changed)  # off, it sleeps until a push
    bridge.add_task("board", board.run)
    bridge.add_task("state-out", state_out.run)
    bridge.add_closer(board.close)  # ends the open streams: the HTTP server stops at once
    bridge.add_closer(state_out.close)  # "offline" before the clean DISCONNECT
    return board


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return the soft
    limit now in force.

    Every HTTP client is a file descriptor: a soft limit of 1,024 (many systems' default)
    left the bridge without one for its own files once clients held them all.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY not in (soft, hard) and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as err:
            log.warning("fd_limit_not_raised", soft=soft, hard=hard, error=str(err))
        else:
            soft = hard
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(wanted: int, fd_limit: int) -> int:
    """``wanted`` HTTP connections, fewer when the health reserve and ``FD_HEADROOM`` would
    not fit under ``fd_limit`` beside them (logged, ``http_max_connections_lowered``)."""
    room = max(1, fd_limit - FD_HEADROOM - HEALTH_RESERVE)
    if wanted <= room:
        return wanted
    log.warning("http_max_connections_lowered", wanted=wanted, allowed=room, fd_limit=fd_limit)
    return room


def http_server(app: ASGIApp, bridge: Bridge, env: EnvSettings) -> HttpServer:
    """The HTTP server for ``app``, its connection cap following the active config (the
    process's limit of open files raised first, see ``raise_fd_limit``)."""
    fd_limit = raise_fd_limit()

    def max_connections() -> int:
        return connection_cap(effective_max_connections(bridge.configs.config, env), fd_limit)

    server = HttpServer(
        app,
        graceful_shutdown_s=HTTP_GRACEFUL_SHUTDOWN_S,
        max_connections=max_connections(),
        backlog=LISTEN_BACKLOG,
    )

    def cap_changed() -> None:
        server.max_connections = max_connections()

    bridge.configs.add_listener(cap_changed)  # a push may set http.max_connections
    return server


def bind_socket(host: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """Bind the HTTP listener ourselves so a busy port is one clear error.

    It listens at once: clients that come while the bridge starts wait in the backlog.
    Pass the same ``backlog`` to ``HttpServer``, which listens again.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise BridgeError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def _stop_http(server: HttpServer, task: asyncio.Task[None]) -> None:
    server.stop()
    try:
        await asyncio.wait_for(task, HTTP_STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("http_shutdown_timeout", seconds=HTTP_STOP_TIMEOUT_S)
    except Exception as err:  # a failing HTTP server must not block the rest
        log.error("http_server_failed", error=str(err))


async def open_store(data_dir: Path, *, install_signal_handlers: bool = True) -> EventStore | None:
    """The store; on a full disk, wait for space (retried, logged once) instead of failing.

    A bridge restarted by its supervisor on a full disk would otherwise fail and be
    restarted again, forever, saying nothing a screen shows. Returns None when
    SIGINT/SIGTERM came while waiting. Every other ``StoreError`` is raised at once.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    delay = DISK_FULL_RETRY_FIRST_S
    waiting_since: float | None = None
    try:
        while True:
            try:
                store = await asyncio.to_thread(EventStore.open, data_dir)
            except DiskFullError as err:
                if waiting_since is None:
                    waiting_since = loop.time()
                    log.error(
                        "store_disk_full",
                        phase="start",
                        error=str(err),
                        message="the disk holding the data dir is full: the bridge waits "
                        "for space before it starts (the broker keeps the devices' messages)",
                    )
                sleep = asyncio.ensure_future(asyncio.sleep(delay))
                stopped = asyncio.ensure_future(stop.wait())
                await asyncio.wait({sleep, stopped}, return_when=asyncio.FIRST_COMPLETED)
                sleep.cancel()
                stopped.cancel()
                if stop.is_set():
                    log.info("store_disk_full_abandoned", phase="start")
                    return None
                delay = min(delay * 2, DISK_FULL_RETRY_CAP_S)
                continue
            if waiting_since is not None:
                log.info(
                    "store_disk_full_ended",
                    phase="start",
                    seconds=round(loop.time() - waiting_since, 3),
                )
            return store
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def serve(
    options: ServiceOptions,
    *,
    on_ready: Callable[[Bridge, str], None] | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run the bridge until SIGINT/SIGTERM (or ``bridge.stop()``), then shut down cleanly."""
    heap.share_one_arena()  # before the store's threads
    store = await open_store(options.data_dir, install_signal_handlers=install_signal_handlers)
    if store is None:
        log.info("bridge_stopped")
        return
    try:
        bridge = service_bridge(options, store)
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
    board = add_views(bridge)
    app = create_app(bridge, api_token=options.env.api_token, board=board)
    server = http_server(app, bridge, options.env)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if install_signal_handlers else ()
    for sig in signals:  # before start: a SIGTERM during start-up is a clean stop too
        loop.add_signal_handler(sig, bridge.stop)
    if install_signal_handlers:
        loop.add_signal_handler(signal.SIGUSR1, log_task_dump)
    server_task: asyncio.Task[None] | None = None
    settle: asyncio.TimerHandle | None = None
    try:
        try:
            await bridge.start()
        except CommitAbandoned:
            return  # stopped while the start's commit waited for disk space
        board.seed(stored_session_events(await asyncio.to_thread(store.recent_events, 1000)))
        # Modules, config and detectors are here to stay: freeze them and trim now
        # (milliseconds); the full collection (0.1 s at 10,000 devices) comes later,
        # out of the way of the start-up burst (the restored devices' pending events).
        heap.settle(collect=False)
        settle = asyncio.get_running_loop().call_later(HEAP_SETTLE_AFTER_S, heap.settle)
        server_task = asyncio.create_task(server.serve(sock), name="http")
        log.info(
            "http_listening",
            url=url,
            docs=f"{url}/docs",
            data_dir=str(options.data_dir),
            max_connections=server.max_connections,
        )
        if on_ready is not None:
            on_ready(bridge, url)
        await bridge.run()
    finally:
        if settle is not None:
            settle.cancel()
        if server_task is not None:
            await _stop_http(server, server_task)
        await bridge.close()
        sock.close()
        for sig in (*signals, signal.SIGUSR1) if install_signal_handlers else ():
            loop.remove_signal_handler(sig)
        log.info("bridge_stopped")
