"""The HTTP API (CONTRACT section 3): a thin FastAPI layer over the bridge's service objects.

Routes read through ``bridge.status`` (health, devices, events), push
through ``bridge.configs`` (``POST /config``) and ``bridge.retry_dead``. The
bridge is also on ``app.state.bridge`` (``Depends(get_bridge)``) for route
modules mounted with ``app.include_router`` in ``create_app``; a route that
needs the bearer token adds ``dependencies=[Depends(require_token)]``.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from iot_bridge.config.model import BridgeConfig
from iot_bridge.config.parse import parse_config
from iot_bridge.errors import ConfigError, StoreError
from iot_bridge.logs import get_logger
from iot_bridge.service.board import BoardService
from iot_bridge.service.bridge import Bridge

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


class OdooStatus(BaseModel):
    configured: bool
    available: bool | None = None  # the endpoint's health; None without Odoo
    since: str | None = None  # when it last changed
    last_error: str | None = None  # while it is down


class HealthResponse(BaseModel):
    status: str = Field(description='"ok", or "degraded" when MQTT is down or events are failing')
    devices: int = Field(description="devices this instance runs (its shard's, with BRIDGE_SHARD)")
    shard: str | None = Field(
        default=None, description='BRIDGE_SHARD ("2/3"), or null: all devices'
    )
    subscriptions: int
    last_config_update: str | None
    mqtt: MqttStatus
    outbox: OutboxStatus
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


_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token"},
}


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
    """FastAPI dependency: the bridge this app serves."""
    bridge: Bridge = request.app.state.bridge
    return bridge


def require_token(request: Request) -> None:
    """FastAPI dependency: raise ``Unauthorized`` unless the bearer token matches.

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


async def _unauthorized(request: Request, _: Exception) -> JSONResponse:
    log.warning(
        "request_rejected",
        reason="unauthorized",
        method=request.method,
        path=request.url.path,
        client=_client(request),
    )
    return _error(401, "missing or wrong bearer token")


def create_app(
    bridge: Bridge, *, api_token: str | None, board: BoardService | None = None
) -> FastAPI:
    """The FastAPI application serving ``bridge`` (and the live board, when given)."""
    app = FastAPI(
        title="iot-bridge",
        version="0.1.0",
        description="Smart-plug power readings in, machine-usage sessions out to Odoo.",
    )
    app.state.bridge = bridge
    app.state.api_token = api_token.encode("utf-8") if api_token else None
    app.add_exception_handler(Unauthorized, _unauthorized)
    protected = APIRouter(dependencies=[Depends(require_token)], responses=_AUTH_RESPONSES)
    config_schema = BridgeConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    config_defs = config_schema.pop("$defs", {})

    @app.get("/health", response_model=HealthResponse)
    async def health() -> dict[str, Any]:
        """Liveness and readiness: 200 while the process runs; ``status`` says degraded."""
        return await bridge.status.health()

    @protected.post(
        "/config",
        response_model=ConfigAppliedResponse,
        responses={
            413: {"model": ErrorResponse, "description": "Body over 16 MiB"},
            503: {"model": ErrorResponse, "description": "The config could not be saved"},
            422: {
                "model": ErrorResponse,
                "description": "Invalid config; every error with its path",
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": config_schema}},
            }
        },
    )
    async def post_config(request: Request) -> Any:
        """Apply a config pushed by Odoo, as a whole or not at all."""
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
        return {
            "status": "success",
            "message": "Configuration applied",
            "devices_configured": applied.devices_configured,
            "mqtt_reconnected": applied.mqtt_reconnected,
            "timestamp": applied.timestamp,
        }

    @protected.get("/config", responses={200: {"content": {"application/json": {}}}})
    async def get_config() -> Any:
        """The active config, with every secret replaced by ``***``."""
        return bridge.configs.config.masked()

    @app.get("/devices", response_model=list[DeviceView])
    async def devices() -> list[dict[str, Any]]:
        """Every configured device with its live state."""
        return bridge.status.devices()

    @app.get("/events", response_model=list[EventView])
    async def events(limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        """The most recent events, newest first, with their delivery status."""
        return await bridge.status.recent_events(limit)

    @protected.post("/events/retry-dead", response_model=RetryDeadResponse)
    async def retry_dead() -> Any:
        """Put dead events back into delivery."""
        return {"status": "success", "retried": await bridge.retry_dead()}

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format; no token needed."""
        body = await asyncio.to_thread(bridge.metrics.exposition)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(protected)
    if board is not None:
        # The board's routes build on this module's dependencies: imported here.
        from iot_bridge.entrypoints.board_routes import board_router  # noqa: PLC0415

        app.include_router(board_router(board))
    _document_config_models(app, config_defs)
    return app


def _document_config_models(app: FastAPI, config_defs: dict[str, Any]) -> None:
    """Add the config models to the OpenAPI components, where the body's $refs point.

    The config body is read raw (for 413 and our 422 shape), so FastAPI does
    not know its models by itself.
    """
    default_openapi = app.openapi

    def openapi_with_config_models() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = default_openapi()
            document.setdefault("components", {}).setdefault("schemas", {}).update(config_defs)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi_with_config_models  # type: ignore[method-assign]


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
