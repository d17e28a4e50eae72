"""The live board over HTTP (CONTRACT section 8): the page, its JSON, the stream, tuning.

- ``GET /`` and ``GET /board/static/<file>``: the static page (no data in it,
  no token needed).
- ``GET /board``: the board's JSON (machines, last hour, recent sessions,
  delivery health).
- ``GET /stream``: ``text/event-stream`` of readings, state changes and
  events, at most ``1 / STREAM_INTERVAL_S`` updates a second per machine; a
  fresh ``snapshot`` first on every (re)connection.
- ``GET /board/devices/{device_id}/tuning``: current and proposed sessions
  over the kept readings; changes nothing.

When ``BRIDGE_API_TOKEN`` is set, the last three need it: as
``Authorization: Bearer`` or, because ``EventSource`` cannot send headers,
as ``?token=`` on ``/stream``. Query strings are never logged (the HTTP server,
``net/http/server.py``, keeps no access log; our log lines carry no URL).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import math
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from iot_bridge.config.model import SessionConfigModel
from iot_bridge.entrypoints.http_api import (
    Unauthorized,
    dump_json,
    get_bridge,
    query_errors,
    require_token,
    route,
)
from iot_bridge.logs import get_logger
from iot_bridge.service.feed import FeedBatch, Subscription
from iot_bridge.service.replay.tuning import compare, tunable_settings
from iot_bridge.service.views.board import BoardService, StreamThrottle, machine_view
from iot_bridge.service.views.status import StatusQueries

log = get_logger(__name__)

KEEPALIVE_S: Final = 15.0
HEALTH_EVERY_S: Final = 5.0
RETRY_MS: Final = 2000
STREAM_QUEUE_BATCHES: Final = 1024
_STATIC: Final = {
    "app.js": "application/javascript; charset=utf-8",
    "chart.js": "application/javascript; charset=utf-8",
    "board.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS: Final = {
    # The page holds no data and runs only its own files.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_NO_STORE: Final = {"Cache-Control": "no-store"}
_AUTH_NEEDED: Final = TypeAdapter(dict[str, bool])


def _static_file(name: str) -> bytes:
    return (resources.files("iot_bridge.entrypoints") / "static" / name).read_bytes()


def delivery_view(health: dict[str, Any], recent: list[dict[str, Any]]) -> dict[str, Any]:
    """Delivery health for the board: outbox counts, whether Odoo answers, the store.

    ``odoo_reachable`` is None when nothing tells (no Odoo, or no delivery
    tried among the recent events), False when the newest tried event failed.
    ``store_error`` (a full disk, since ``store_since``) and ``store_warning``
    (the disk budget) are the page's banner.
    """
    outbox = health.get("outbox", {})
    store = health.get("store", {})
    configured = bool(health.get("odoo", {}).get("configured"))
    reachable: bool | None = None
    last_error: str | None = None
    if configured:
        for event in recent:  # newest first
            delivery = event.get("delivery", {})
            if delivery.get("status") == "delivered":
                reachable = True
                break
            if delivery.get("attempts", 0) > 0:
                reachable = False
                last_error = delivery.get("last_error")
                break
    return {
        "pending": outbox.get("pending"),
        "dead": outbox.get("dead"),
        "flagged": outbox.get("flagged"),
        "odoo_configured": configured,
        "odoo_reachable": reachable,
        "odoo_last_error": last_error,
        "mqtt_connected": bool(health.get("mqtt", {}).get("connected")),
        "status": health.get("status"),
        "store_disk_full": bool(store.get("disk_full")),
        "store_error": store.get("error"),
        "store_since": store.get("since"),
        "store_warning": store.get("warning"),
        "data_dir_bytes": store.get("data_dir_bytes"),
    }


def _sse(name: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


class TuningQuery(BaseModel):
    """Proposed settings; each one not given keeps the device's current value."""

    model_config = ConfigDict(extra="forbid")

    standby_threshold_w: float | None = None
    working_threshold_w: float | None = None
    start_debounce_s: float | None = None
    stop_debounce_s: float | None = None
    message_timeout_s: float | None = None


def tuning_query(request: Request) -> TuningQuery:
    """The query string as a ``TuningQuery``, the way FastAPI reads a query model.

    Each field takes the last value given; a key that is no field goes in as
    given (a list when repeated) for ``extra="forbid"`` to refuse. Raises
    ``ValidationError``.
    """
    params = request.query_params
    values: dict[str, Any] = {
        name: params[name] for name in TuningQuery.model_fields if name in params
    }
    extras: dict[str, list[str]] = {}
    for key, value in params.multi_items():
        if key not in TuningQuery.model_fields:
            extras.setdefault(key, []).append(value)
    values.update({key: found[0] if len(found) == 1 else found for key, found in extras.items()})
    return TuningQuery.model_validate(values, from_attributes=True)


def require_stream_token(request: Request) -> None:
    """``require_token``, or for ``EventSource`` (no headers) the token as ``?token=``."""
    expected: bytes | None = request.app.state.api_token
    if expected is None or "authorization" in request.headers:
        require_token(request)
        return
    given = request.query_params.get("token", "").encode("utf-8", "replace")
    if not hmac.compare_digest(given, expected):
        raise Unauthorized


class _BoardApi:
    """What the routes share: the board service and the bridge's status queries."""

    def __init__(self, service: BoardService) -> None:
        self.service = service
        self.boot = f"{time.time_ns():x}"
        self.streams = itertools.count(1)

    async def delivery(self, status: StatusQueries) -> dict[str, Any]:
        """Delivery health for the page."""
        return delivery_view(await status.health(), await status.recent_events(20))

    async def snapshot(self, status: StatusQueries) -> dict[str, Any]:
        """The board's JSON."""
        board = self.service.board.snapshot(self.service.now())
        board["delivery"] = await self.delivery(status)
        return board

    def tuning(self, device_id: str, query: TuningQuery) -> Response:
        """Current and proposed sessions of one device, or 404/422."""
        status = self.service.board.directory.status(device_id)
        if status is None:
            return JSONResponse(
                {"status": "error", "message": f"no device {device_id!r}", "errors": []},
                status_code=404,
            )
        current = status.session_config
        merged: dict[str, float] = tunable_settings(current)
        merged.update(query.model_dump(exclude_none=True))
        merged["heartbeat_interval_s"] = current.heartbeat_interval_s
        try:
            proposed = SessionConfigModel.model_validate(merged).to_domain()
        except ValidationError as err:
            errors = [
                {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in err.errors()
            ]
            message = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
            return JSONResponse(
                {"status": "error", "message": f"invalid proposal: {message}", "errors": errors},
                status_code=422,
            )
        now = self.service.now()
        result = compare(self.service.board.readings(device_id, now), current, proposed, now=now)
        result["machine"] = machine_view(status)
        return Response(orjson.dumps(result), media_type="application/json", headers=_NO_STORE)

    async def events(
        self, subscription: Subscription, stream_id: str, status: StatusQueries
    ) -> AsyncIterator[bytes]:
        """One client's stream: a snapshot, then throttled updates, health, keep-alives."""
        loop = asyncio.get_running_loop()
        throttle = StreamThrottle()
        sequence = itertools.count(1)
        log.info("board_stream_opened", stream=stream_id)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            yield _sse("snapshot", await self.snapshot(status), f"{stream_id}-{next(sequence)}")
            dropped = subscription.dropped
            next_health = loop.time() + HEALTH_EVERY_S
            next_keepalive = loop.time() + KEEPALIVE_S
            while not subscription.closed:
                wake = min(next_health, next_keepalive, throttle.next_flush_at() or math.inf)
                batch = await _next_batch(subscription, max(0.0, wake - loop.time()))
                while batch is not None:
                    throttle.add(batch)
                    batch = subscription.get_nowait()
                now = loop.time()
                out: list[bytes] = []
                if subscription.dropped != dropped:
                    # This client fell behind: a whole new picture, not a patched one.
                    dropped = subscription.dropped
                    throttle.flush(now)
                    snapshot = await self.snapshot(status)
                    out.append(_sse("snapshot", snapshot, f"{stream_id}-{next(sequence)}"))
                elif throttle.due(now):
                    out.extend(
                        _sse(name, data, f"{stream_id}-{next(sequence)}")
                        for name, data in throttle.flush(now)
                    )
                if now >= next_health:
                    out.append(_sse("health", await self.delivery(status)))
                    next_health = now + HEALTH_EVERY_S
                if not out and now >= next_keepalive:
                    out.append(b": keep-alive\n\n")
                if out:
                    next_keepalive = now + KEEPALIVE_S
                    yield b"".join(out)
        finally:
            subscription.close()
            log.info("board_stream_closed", stream=stream_id)


def board_routes(service: BoardService) -> list[Route]:
    """The board's routes; ``create_app`` adds them."""
    api = _BoardApi(service)

    async def page(_: Request) -> Response:
        """The board page (static; no data in it)."""
        return Response(
            _static_file("index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS
        )

    async def static(request: Request) -> Response:
        """The page's own scripts and style sheet (a fixed list)."""
        name = request.path_params["name"]
        media_type = _STATIC.get(name)
        if media_type is None:
            return Response(status_code=404)
        return Response(_static_file(name), media_type=media_type, headers=_PAGE_HEADERS)

    async def auth(request: Request) -> Response:
        """Whether the board's data needs a token (so the page asks before trying)."""
        return dump_json(_AUTH_NEEDED, {"token_required": request.app.state.api_token is not None})

    async def board(request: Request) -> Response:
        """Everything the board draws: machines with their last hour, sessions, delivery."""
        require_token(request)
        body = orjson.dumps(await api.snapshot(get_bridge(request).status))
        return Response(body, media_type="application/json", headers=_NO_STORE)

    async def tuning(request: Request) -> Response:
        """The sessions the kept readings give with the current and the proposed settings.

        Settings not given keep their current value. Nothing on the bridge changes.
        """
        require_token(request)
        try:
            query = tuning_query(request)
        except ValidationError as err:
            return query_errors(err)
        return api.tuning(request.path_params["device_id"], query)

    async def stream(request: Request) -> Response:
        """Server-sent events: ``snapshot``, then ``state``, ``event``, ``reading``, ``health``.

        Pass the token as ``Authorization: Bearer`` or ``?token=`` (EventSource).
        """
        require_stream_token(request)
        number = next(api.streams)
        subscription = service.subscribe_stream(f"stream-{number}", STREAM_QUEUE_BATCHES)
        return StreamingResponse(
            api.events(subscription, f"{api.boot}-{number}", get_bridge(request).status),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return [
        route("/", page),
        route("/board/static/{name}", static),
        route("/board/auth", auth),
        route("/board", board),
        route("/board/devices/{device_id}/tuning", tuning),
        route("/stream", stream),
    ]


async def _next_batch(subscription: Subscription, timeout_s: float) -> FeedBatch | None:
    """The next batch, or None after ``timeout_s`` or once the subscription is closed."""
    ready = subscription.get_nowait()
    if ready is not None or timeout_s <= 0:
        return ready
    try:
        async with asyncio.timeout(timeout_s):
            return await subscription.get()
    except (TimeoutError, EOFError):
        return None
