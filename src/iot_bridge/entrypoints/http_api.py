"""The HTTP API (CONTRACT section 3): a thin Starlette layer over the bridge's service objects.

Routes read through ``bridge.status`` (health, devices, events), push
through ``bridge.configs`` (``POST /config``) and ``bridge.retry_dead``. The
bridge is also on ``app.state.bridge`` (``get_bridge``) for route modules
added in ``create_app``; a route that needs the bearer token calls
``require_token(request)`` first (``Unauthorized`` is answered 401).

Starlette, not FastAPI: FastAPI doubled the idle bridge's memory for what it
gave here (validation of two query strings and a generated OpenAPI document).
The replies are the same as FastAPI's were: response bodies through the
models below (``dump_json``, as FastAPI's ``response_model``), query errors
as ``{"detail": [...]}`` (``query_errors``), 404/405 as ``{"detail": ...}``.
``GET /openapi.json`` serves ``openapi.json`` beside this module, with the
config schema filled in from ``BridgeConfig``; ``GET /docs`` a page listing it.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from html import escape
from importlib import resources
from typing import Annotated, Any, Final

import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from iot_bridge.config.model import BridgeConfig
from iot_bridge.config.parse import parse_config
from iot_bridge.errors import ConfigError, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.bridge import Bridge
from iot_bridge.service.views.board import BoardService

log = get_logger(__name__)

MAX_CONFIG_BODY_BYTES = 16 * 1024 * 1024  # CONTRACT §3: 10,000 devices are ~1-3.5 MB


class MqttStatus(BaseModel):
    connected: bool
    broker: str
    protocol: str | None = Field(
        default=None,
        description='"5", or "3.1.1" for a broker that refused MQTT 5; null until connected',
    )
    last_error: str | None = None


class OutboxStatus(BaseModel):
    pending: int | None = Field(description="null only when the store cannot be read")
    dead: int | None
    flagged: int | None = 0
    error: str | None = None


class StoreStatus(BaseModel):
    disk_full: bool = Field(
        description="true while commits fail for lack of disk space (nothing is acknowledged)"
    )
    error: str | None = Field(
        default=None,
        description="why the store is failing (the disk is full, the data dir cannot be read)",
    )
    since: str | None = Field(default=None, description="when the disk-full condition started")
    warning: str | None = Field(
        default=None,
        description="pending and dead events alone over 80 % of the disk budget, or over budget",
    )
    data_dir_bytes: int | None = Field(
        default=None, description="the data dir's files on disk; null when it cannot be read"
    )
    disk_free_bytes: int | None = None
    retention_days: float = Field(description="delivered events are deleted after this")
    disk_budget_bytes: int | None = Field(default=None, description="null: no budget")


class OdooStatus(BaseModel):
    configured: bool
    available: bool | None = None  # the endpoint's health; None without Odoo
    since: str | None = None  # when it last changed
    last_error: str | None = None  # while it is down


class HealthResponse(BaseModel):
    status: str = Field(
        description='"ok", or "degraded" when MQTT is down, events are failing or the disk is full'
    )
    devices: int = Field(description="devices this instance runs (its shard's, with BRIDGE_SHARD)")
    shard: str | None = Field(
        default=None, description='BRIDGE_SHARD ("2/3"), or null: all devices'
    )
    subscriptions: int
    last_config_update: str | None
    mqtt: MqttStatus
    outbox: OutboxStatus
    store: StoreStatus
    odoo: OdooStatus


class ConfigAppliedResponse(BaseModel):
    status: str
    message: str
    devices_configured: int
    mqtt_reconnected: bool
    timestamp: str


class ErrorItem(BaseModel):
    path: str
    message: str


class ErrorResponse(BaseModel):
    status: str = "error"
    message: str
    errors: list[ErrorItem] = []


class DeviceView(BaseModel):
    device_id: str
    machine_name: str
    parser_type: str
    mqtt_topic: str
    state: str
    online: bool
    last_seen: str | None
    power_w: float | None
    session_id: str | None


class DeliveryView(BaseModel):
    status: str
    attempts: int
    last_error: str | None
    created_at: str
    delivered_at: str | None


class EventView(BaseModel):
    event_uid: str
    event_type: str
    device_id: str
    machine_name: str
    session_id: str | None
    timestamp: str
    data: dict[str, Any]
    status: str = Field(description="pending, delivered, dead, or local when no Odoo is configured")
    delivery: DeliveryView


class RetryDeadResponse(BaseModel):
    status: str
    retried: int


Endpoint = Callable[[Request], Awaitable[Response]]


def route(path: str, endpoint: Endpoint, method: str = "GET") -> Route:
    """A route answering ``method`` only (no implicit HEAD: 405, as FastAPI's routes)."""
    made = Route(path, endpoint, methods=[method])
    assert made.methods is not None
    made.methods.discard("HEAD")
    return made


def dump_json(
    adapter: TypeAdapter[Any], content: Any, headers: dict[str, str] | None = None
) -> Response:
    """``content`` validated and serialized by ``adapter``, as FastAPI's ``response_model`` does."""
    value = adapter.validate_python(content, from_attributes=True)
    return Response(adapter.dump_json(value), media_type="application/json", headers=headers)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def query_errors(err: ValidationError, loc: tuple[str, ...] = ("query",)) -> JSONResponse:
    """The 422 FastAPI answers for invalid query parameters: ``{"detail": [...]}``."""
    detail = [{**e, "loc": [*loc, *e["loc"]]} for e in err.errors(include_url=False)]
    return JSONResponse({"detail": _jsonable(detail)}, status_code=422)


_LIMIT: Final[TypeAdapter[int]] = TypeAdapter(Annotated[int, Field(ge=1, le=1000)])
_HEALTH: Final = TypeAdapter(HealthResponse)
_DEVICES: Final = TypeAdapter(list[DeviceView])
_EVENTS: Final = TypeAdapter(list[EventView])
_APPLIED: Final = TypeAdapter(ConfigAppliedResponse)
_RETRIED: Final = TypeAdapter(RetryDeadResponse)


def _error(
    status_code: int, message: str, errors: list[dict[str, str]] | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    return JSONResponse(
        {"status": "error", "message": message, "errors": errors or []},
        status_code=status_code,
        headers=headers,
    )


class Unauthorized(Exception):
    """The request lacks the exact bearer token (answered 401 by the app)."""


def get_bridge(request: Request) -> Bridge:
    """The bridge this app serves."""
    bridge: Bridge = request.app.state.bridge
    return bridge


def require_token(request: Request) -> None:
    """Raise ``Unauthorized`` unless the bearer token matches.

    No token configured (``BRIDGE_API_TOKEN`` unset) lets every request in.
    """
    expected: bytes | None = request.app.state.api_token
    if expected is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Starlette decodes header bytes as latin-1: encoding back gives the
    # client's bytes (UTF-8 for a non-ASCII token). The scheme is case-insensitive.
    given = token.strip().encode("latin-1", "replace")
    if not (hmac.compare_digest(given, expected) and scheme.lower() == "bearer"):
        raise Unauthorized


async def _unauthorized(request: Request, _: Exception) -> Response:
    log.warning(
        "request_rejected",
        reason="unauthorized",
        method=request.method,
        path=request.url.path,
        client=_client(request),
    )
    return _error(401, "missing or wrong bearer token")


async def _http_error(_: Request, exc: Exception) -> Response:
    """404, 405 and the like as ``{"detail": ...}`` (FastAPI's shape)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class _OpenApi:
    """``openapi.json`` beside this module, with the config schema from ``BridgeConfig``."""

    def __init__(self) -> None:
        self._body: bytes | None = None

    def document(self) -> dict[str, Any]:
        """The OpenAPI document the bridge serves."""
        raw = (resources.files("iot_bridge.entrypoints") / "openapi.json").read_bytes()
        document: dict[str, Any] = orjson.loads(raw)
        schema = BridgeConfig.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = schema.pop("$defs", {})
        body = document["paths"]["/config"]["post"]["requestBody"]
        body["content"]["application/json"]["schema"] = _without_nulls(schema)
        document["components"]["schemas"].update(defs)
        return document

    async def serve(self, _: Request) -> Response:
        """``GET /openapi.json``."""
        if self._body is None:
            self._body = orjson.dumps(self.document())
        return Response(self._body, media_type="application/json")

    async def docs(self, _: Request) -> Response:
        """``GET /docs``: the operations of the document, as a page (no script, no CDN)."""
        return Response(docs_page(self.document()), media_type="text/html; charset=utf-8")


def docs_page(document: dict[str, Any]) -> str:
    """An HTML page listing ``document``'s operations, with a link to the document."""
    rows: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            needs_token = "401" in operation.get("responses", {})
            codes = ", ".join(operation.get("responses", {}))
            rows.append(
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td>"
                "<td>{}</td></tr>".format(
                    escape(method.upper()),
                    escape(path),
                    "token" if needs_token else "",
                    escape(operation.get("description") or operation.get("summary", "")),
                    escape(codes),
                )
            )
    info = document["info"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info['title'])} API</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .6em;"
        "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
        "td:nth-child(4){white-space:pre-line}</style></head><body>"
        f"<h1>{escape(info['title'])} {escape(info['version'])}</h1>"
        f"<p>{escape(info.get('description', ''))}</p>"
        '<p>The full OpenAPI document: <a href="/openapi.json">/openapi.json</a> '
        "(load it into any OpenAPI viewer). Routes marked <em>token</em> need "
        "<code>Authorization: Bearer &lt;BRIDGE_API_TOKEN&gt;</code> when it is set.</p>"
        "<table><tr><th>method</th><th>path</th><th>auth</th><th>what</th><th>answers</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )


def _without_nulls(value: Any) -> Any:
    """``value`` without the keys set to None (FastAPI wrote the body schema so)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def create_app(
    bridge: Bridge, *, api_token: str | None, board: BoardService | None = None
) -> Starlette:
    """The application serving ``bridge`` (and the live board, when given)."""

    async def health(_: Request) -> Response:
        """Liveness and readiness: 200 while the process runs; ``status`` says degraded."""
        return dump_json(_HEALTH, await bridge.status.health())

    async def post_config(request: Request) -> Response:
        """Apply a config pushed by Odoo, as a whole or not at all."""
        require_token(request)
        parsed = await _read_config(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        config = parsed
        log.info("config_received", devices=len(config.devices), client=_client(request))
        try:
            applied = await bridge.configs.apply(config)
        except ConfigError as err:
            return _invalid(err)
        except StoreError as err:
            log.error("config_persist_failed", error=str(err))
            return _error(503, f"the config could not be saved, nothing changed: {err}")
        return dump_json(
            _APPLIED,
            {
                "status": "success",
                "message": "Configuration applied",
                "devices_configured": applied.devices_configured,
                "mqtt_reconnected": applied.mqtt_reconnected,
                "timestamp": applied.timestamp,
            },
        )

    async def get_config(request: Request) -> Response:
        """The active config, with every secret replaced by ``***``."""
        require_token(request)
        return JSONResponse(bridge.configs.config.masked())

    async def devices(_: Request) -> Response:
        """Every configured device with its live state."""
        return dump_json(_DEVICES, bridge.status.devices())

    async def events(request: Request) -> Response:
        """The most recent events, newest first, with their delivery status."""
        given = request.query_params.get("limit")
        try:
            limit = 100 if given is None else _LIMIT.validate_python(given)
        except ValidationError as err:
            return query_errors(err, ("query", "limit"))
        return dump_json(_EVENTS, await bridge.status.recent_events(limit))

    async def retry_dead(request: Request) -> Response:
        """Put dead events back into delivery."""
        require_token(request)
        try:
            retried = await bridge.retry_dead()
        except StoreError as err:
            log.error("retry_dead_failed", error=str(err))
            return _error(503, f"dead events could not be put back, nothing changed: {err}")
        return dump_json(_RETRIED, {"status": "success", "retried": retried})

    async def metrics(_: Request) -> Response:
        """Prometheus text format; no token needed."""
        body = await asyncio.to_thread(bridge.metrics.exposition)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        route("/health", health),
        route("/devices", devices),
        route("/events", events),
        route("/metrics", metrics),
        route("/config", post_config, "POST"),
        route("/config", get_config),
        route("/events/retry-dead", retry_dead, "POST"),
    ]
    if board is not None:
        # The board's routes build on this module's helpers: imported here.
        from iot_bridge.entrypoints.board_routes import board_routes  # noqa: PLC0415

        routes += board_routes(board)
    openapi = _OpenApi()
    routes += [route("/openapi.json", openapi.serve), route("/docs", openapi.docs)]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Unauthorized: _unauthorized},
    )
    app.state.bridge = bridge
    app.state.api_token = api_token.encode("utf-8") if api_token else None
    return app


def _invalid(err: ConfigError) -> JSONResponse:
    issues = [{"path": i.path, "message": i.message} for i in err.issues]
    log.warning("config_rejected", reason="invalid", errors=issues[:20])
    return _error(422, str(err), issues)


async def _read_config(request: Request) -> BridgeConfig | JSONResponse:
    """The validated config of a push, or the 413/422 reply that refuses it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_CONFIG_BODY_BYTES:
        return _error(413, "config body is larger than 16 MiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_CONFIG_BODY_BYTES:
            return _error(413, "config body is larger than 16 MiB")
    body = b"".join(chunks)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        return _error(422, f"body is not valid JSON: {err}", [{"path": "", "message": str(err)}])
    try:
        return parse_config(document, source="config push")
    except ConfigError as err:
        return _invalid(err)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None
