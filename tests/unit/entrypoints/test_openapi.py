"""The committed OpenAPI document (entrypoints/openapi.json) against the app it describes.

The document is maintained by hand since the API is served by Starlette: these
tests keep it true to the route table, the response models and the config model.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.routing import Route

from iot_bridge.bootstrap import add_views
from iot_bridge.config.model import BridgeConfig
from iot_bridge.entrypoints import http_api
from iot_bridge.entrypoints.board_routes import TuningQuery
from tests.unit.service.fakes import Rig, config

# Served, but not API operations: the board's page and files, and the documentation itself.
UNDOCUMENTED = {
    ("GET", "/"),
    ("GET", "/board/static/{name}"),
    ("GET", "/board/auth"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
}
RESPONSE_MODELS: list[type[BaseModel]] = [
    http_api.HealthResponse,
    http_api.MqttStatus,
    http_api.OutboxStatus,
    http_api.OdooStatus,
    http_api.ConfigAppliedResponse,
    http_api.ErrorResponse,
    http_api.ErrorItem,
    http_api.DeviceView,
    http_api.DeliveryView,
    http_api.EventView,
    http_api.RetryDeadResponse,
]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return http_api._OpenApi().document()


def _routes() -> set[tuple[str, str]]:
    rig = Rig(config("mill"))
    app = http_api.create_app(rig.bridge, api_token="t", board=add_views(rig.bridge))
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        assert isinstance(route, Route)
        assert route.methods is not None
        assert "HEAD" not in route.methods  # 405, as the FastAPI routes answered
        found.update((method, route.path) for method in route.methods)
    return found


def test_document_has_exactly_the_apps_operations(document: dict[str, Any]) -> None:
    """Every route of the app is in the document (or knowingly left out), and nothing more."""
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == _routes() - UNDOCUMENTED


def test_token_routes_document_their_401(document: dict[str, Any]) -> None:
    """The routes that take the bearer token say so (401), the open ones do not."""
    needs_token = {
        ("post", "/config"),
        ("get", "/config"),
        ("post", "/events/retry-dead"),
        ("get", "/board"),
        ("get", "/board/devices/{device_id}/tuning"),
        ("get", "/stream"),
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert ("401" in operation["responses"]) == ((method, path) in needs_token), path


@pytest.mark.parametrize("model", RESPONSE_MODELS, ids=lambda m: m.__name__)
def test_response_schemas_match_the_models_the_replies_go_through(
    document: dict[str, Any], model: type[BaseModel]
) -> None:
    """Each response schema has the fields, types and required list of its model."""
    generated = model.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    generated.pop("$defs", None)
    written = document["components"]["schemas"][model.__name__]
    assert written["required"] == generated["required"]
    assert list(written["properties"]) == list(generated["properties"])
    for name, field in generated["properties"].items():
        for key in ("type", "anyOf", "items", "$ref", "additionalProperties"):
            assert written["properties"][name].get(key) == field.get(key), (name, key)


def test_tuning_parameters_are_the_query_models_fields(document: dict[str, Any]) -> None:
    operation = document["paths"]["/board/devices/{device_id}/tuning"]["get"]
    query = [p["name"] for p in operation["parameters"] if p["in"] == "query"]
    assert query == list(TuningQuery.model_fields)


def test_config_body_is_the_config_model(document: dict[str, Any]) -> None:
    """POST /config's body schema and its components come from BridgeConfig when served."""
    schema = BridgeConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs")
    body = document["paths"]["/config"]["post"]["requestBody"]
    assert body["required"] is True
    served = body["content"]["application/json"]["schema"]
    assert served["properties"].keys() == schema["properties"].keys()
    assert served["additionalProperties"] is False
    for name, definition in defs.items():
        assert document["components"]["schemas"][name] == definition


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = str(document)
    for name in set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text)):
        assert name in document["components"]["schemas"], name


def test_docs_page_lists_every_operation(document: dict[str, Any]) -> None:
    page = http_api.docs_page(document)
    assert '<a href="/openapi.json">' in page
    for path, operations in document["paths"].items():
        for method in operations:
            assert f"<code>{method.upper()}</code></td><td><code>{path}</code>" in page
    assert "<script" not in page
