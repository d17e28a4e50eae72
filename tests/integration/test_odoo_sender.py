"""OdooSender against the real Odoo stand-in: envelope, auth, and the §6 classification."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from iot_bridge.adapters.odoo import OdooSender, parse_retry_after
from iot_bridge.errors import DeliveryError
from tests.support.odoo_standin import OdooStandin

API_KEY = "s3cret-key-4711"


def make_event(device_id: str = "plug-1", **overrides: Any) -> dict[str, Any]:
    """One EVENT object as CONTRACT §6 shapes it."""
    event: dict[str, Any] = {
        "event_uid": str(uuid.uuid4()),
        "event_type": "device_online",
        "device_id": device_id,
        "machine_name": "CNC Mill",
        "session_id": None,
        "timestamp": "2026-02-12T19:40:18.123456+00:00",
        "data": {"last_seen": "2026-02-12T19:40:18.123456+00:00"},
    }
    event.update(overrides)
    return event


@pytest.fixture
async def sender(odoo_standin: OdooStandin) -> AsyncIterator[OdooSender]:
    """A sender pointed at the plain stand-in, with a short timeout."""
    sender = OdooSender(base_url=odoo_standin.url, timeout_s=2.0)
    yield sender
    await sender.aclose()


async def test_success_posts_the_jsonrpc_envelope(
    sender: OdooSender, odoo_standin: OdooStandin
) -> None:
    """A 200 with result is success and the stand-in receives the EVENT unchanged."""
    event = make_event()
    await sender.send(event)
    assert odoo_standin.events == [event]
    assert odoo_standin.invalid == []


async def test_api_key_and_database_are_sent(
    odoo_standin_factory: Callable[..., OdooStandin],
) -> None:
    """Bearer key and ?db= reach Odoo; a wrong key or database is a transient failure."""
    standin = odoo_standin_factory(api_key=API_KEY, database="odoo")
    good = OdooSender(base_url=standin.url + "/", database="odoo", api_key=API_KEY)
    wrong_key = OdooSender(base_url=standin.url, database="odoo", api_key="nope")
    wrong_db = OdooSender(base_url=standin.url, database="other", api_key=API_KEY)
    try:
        await good.send(make_event())
        assert len(standin.events) == 1
        with pytest.raises(DeliveryError) as err:
            await wrong_key.send(make_event())
        assert not err.value.permanent
        assert "401" in str(err.value)
        with pytest.raises(DeliveryError) as err:
            await wrong_db.send(make_event())
        assert not err.value.permanent
        assert "404" in str(err.value)
    finally:
        for one in (good, wrong_key, wrong_db):
            await one.aclose()
    assert len(standin.events) == 1


async def test_no_db_query_without_database(
    odoo_standin_factory: Callable[..., OdooStandin],
) -> None:
    """Without a database the URL has no ?db=, which a db-checking Odoo refuses (404)."""
    standin = odoo_standin_factory(database="odoo")
    sender = OdooSender(base_url=standin.url)
    try:
        with pytest.raises(DeliveryError, match="404"):
            await sender.send(make_event())
    finally:
        await sender.aclose()


async def test_api_key_never_appears_in_errors(odoo_standin: OdooStandin) -> None:
    """Even when Odoo echoes the key back, the error message carries only ***."""
    sender = OdooSender(base_url=odoo_standin.url, api_key=API_KEY)
    odoo_standin.set_mode("status", status=401, body=f"bad key Bearer {API_KEY}")
    try:
        with pytest.raises(DeliveryError) as err:
            await sender.send(make_event())
    finally:
        await sender.aclose()
    assert API_KEY not in str(err.value)
    assert "***" in str(err.value)


# (mode params, permanent?) for every reply CONTRACT §6 names, and a few it does not.
CLASSIFICATION: list[tuple[str, dict[str, Any], bool]] = [
    *[("status", {"status": code}, True) for code in (400, 409, 413, 415, 422)],
    *[
        ("status", {"status": code}, False)
        for code in (401, 403, 404, 408, 429, 500, 502, 503, 504, 201, 204, 302, 405, 410)
    ],
    ("validation_error", {}, True),
    ("user_error", {}, True),
    ("rpc_error", {"name": "odoo.addons.ows_iot.models.EventValidationError"}, True),
    ("rpc_error", {"name": "odoo.exceptions.AccessError"}, False),
    ("rpc_error", {"name": "odoo.exceptions.AccessDenied"}, False),
    ("rpc_error", {"name": "builtins.KeyError"}, False),
    ("down", {}, False),
    ("rate_limited", {}, False),
    ("unauthorized", {}, False),
    ("status", {"status": 200, "body": "<html>maintenance</html>"}, False),
    ("status", {"status": 200, "body": '{"jsonrpc": "2.0", "id": 1}'}, False),
    ("status", {"status": 200, "body": "[1, 2]"}, False),
]


@pytest.mark.parametrize(
    ("mode", "params", "permanent"),
    CLASSIFICATION,
    ids=[f"{m}-{p.get('status', p.get('name', ''))}" for m, p, _ in CLASSIFICATION],
)
async def test_reply_classification(
    sender: OdooSender,
    odoo_standin: OdooStandin,
    mode: str,
    params: dict[str, Any],
    permanent: bool,
) -> None:
    """Each reply is permanent or transient exactly as CONTRACT §6 says."""
    odoo_standin.set_mode(mode, **params)
    with pytest.raises(DeliveryError) as err:
        await sender.send(make_event())
    assert err.value.permanent is permanent
    assert odoo_standin.events == []


async def test_timeout_is_transient(odoo_standin: OdooStandin) -> None:
    """A reply slower than the timeout is a transient failure."""
    sender = OdooSender(base_url=odoo_standin.url, timeout_s=0.2)
    odoo_standin.set_mode("slow", delay_s=5.0)
    try:
        with pytest.raises(DeliveryError, match="timeout") as err:
            await sender.send(make_event())
    finally:
        await sender.aclose()
    assert not err.value.permanent


async def test_refused_connection_is_transient_and_heals(
    sender: OdooSender, odoo_standin: OdooStandin
) -> None:
    """A closed port is transient; when Odoo listens again (same port) sending works."""
    await sender.send(make_event())
    odoo_standin.set_mode("refused")
    with pytest.raises(DeliveryError) as err:
        await sender.send(make_event())
    assert not err.value.permanent
    odoo_standin.set_mode("ok")
    await sender.send(make_event())
    assert len(odoo_standin.events) == 2


async def test_unreachable_host_is_transient() -> None:
    """Nothing listening at all (a port just freed) is transient, not a crash."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = OdooSender(base_url=f"http://127.0.0.1:{port}", timeout_s=1.0)
    try:
        with pytest.raises(DeliveryError) as err:
            await sender.send(make_event())
    finally:
        await sender.aclose()
    assert not err.value.permanent


async def test_retry_after_seconds_on_429(sender: OdooSender, odoo_standin: OdooStandin) -> None:
    """429 with Retry-After: 42 tells the worker to wait 42 s."""
    odoo_standin.set_mode("rate_limited", retry_after="42")
    with pytest.raises(DeliveryError) as err:
        await sender.send(make_event())
    assert err.value.retry_after_s == 42.0
    assert not err.value.permanent


async def test_retry_after_http_date_on_503(sender: OdooSender, odoo_standin: OdooStandin) -> None:
    """503 with Retry-After as an HTTP date gives the seconds until then."""
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    odoo_standin.set_mode("down", retry_after=when)
    with pytest.raises(DeliveryError) as err:
        await sender.send(make_event())
    assert err.value.retry_after_s is not None
    assert 110 <= err.value.retry_after_s <= 121


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        ("  15 ", 15.0),
        ("999999", 3600.0),
        ("-5", None),
        ("soon", None),
        ("1.5", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """Retry-After parsing: seconds, HTTP dates (past = 0), garbage = None, capped at 1 h."""
    assert parse_retry_after(header, now=time.time()) == expected


async def test_connections_are_reused(sender: OdooSender, odoo_standin: OdooStandin) -> None:
    """Fifty sends in a row use one keep-alive connection."""
    for _ in range(50):
        await sender.send(make_event())
    assert len(odoo_standin.events) == 50
    assert odoo_standin.connections_opened == 1


async def test_duplicates_are_accepted_and_recorded(
    sender: OdooSender, odoo_standin: OdooStandin
) -> None:
    """Re-sending an event succeeds; the stand-in keeps one copy and notes the duplicate."""
    event = make_event()
    await sender.send(event)
    await sender.send(event)
    assert odoo_standin.events == [event]
    assert odoo_standin.duplicates == [event]


async def test_concurrent_sends_reuse_their_connections(
    sender: OdooSender, odoo_standin: OdooStandin
) -> None:
    """Four rounds of 8 concurrent sends open at most 8 connections, all kept alive."""
    for _ in range(4):
        await asyncio.gather(*(sender.send(make_event(f"d{n}")) for n in range(8)))
    assert len(odoo_standin.events) == 32
    assert odoo_standin.connections_opened <= 8


async def test_aclose_closes_every_connection(
    sender: OdooSender, odoo_standin: OdooStandin
) -> None:
    """aclose() closes the kept-alive connections; a later send opens a new one."""
    await asyncio.gather(*(sender.send(make_event(f"d{n}")) for n in range(3)))
    assert sender.connections_open == 3
    await sender.aclose()
    assert sender.connections_open == 0
    await sender.send(make_event())
    assert odoo_standin.connections_opened == 4
    assert len(odoo_standin.events) == 4


async def test_a_connection_closed_by_odoo_while_idle_is_replaced(
    sender: OdooSender, odoo_standin: OdooStandin
) -> None:
    """Odoo closing an idle keep-alive connection costs no failure: the send goes on a new one."""
    await sender.send(make_event())
    odoo_standin.stop()  # drops the open connection, as a server's idle timeout does
    odoo_standin.start()
    await sender.send(make_event())
    assert len(odoo_standin.events) == 2
    assert odoo_standin.connections_opened == 2


@pytest.mark.parametrize(
    ("mode", "params", "endpoint"),
    [
        ("down", {}, True),
        ("status", {"status": 500}, True),
        ("status", {"status": 404}, True),
        ("unauthorized", {}, True),
        ("rate_limited", {"retry_after": "5"}, True),
        ("status", {"status": 408}, True),
        # Odoo 18's answer to a wrong bearer key on a type="json" route: HTTP 200, this error.
        ("rpc_error", {"name": "werkzeug.exceptions.Unauthorized"}, True),
        ("rpc_error", {"name": "werkzeug.exceptions.Forbidden"}, True),
        ("rpc_error", {}, False),
        ("status", {"status": 302}, False),
        ("status", {"status": 410}, False),
        ("status", {"status": 200, "body": "{}", "content_type": "application/json"}, False),
    ],
)
async def test_endpoint_failures_are_told_apart_from_event_failures(
    sender: OdooSender, odoo_standin: OdooStandin, mode: str, params: dict[str, Any], endpoint: bool
) -> None:
    """5xx, 401/403/404, 408, 429 and a JSON-RPC Unauthorized say Odoo as a whole is failing."""
    odoo_standin.set_mode(mode, **params)
    with pytest.raises(DeliveryError) as err:
        await sender.send(make_event())
    assert not err.value.permanent
    assert err.value.endpoint is endpoint


async def test_no_answer_is_an_endpoint_failure() -> None:
    """A refused connection marks the endpoint as failing."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = OdooSender(base_url=f"http://127.0.0.1:{port}", timeout_s=1.0)
    with pytest.raises(DeliveryError, match="cannot connect") as err:
        await sender.send(make_event())
    assert err.value.endpoint


# -- request_format: json (a type="http" controller) -----------------------------------


@pytest.fixture
def http_standin(odoo_standin_factory: Callable[..., OdooStandin]) -> OdooStandin:
    """A stand-in playing a type="http" controller that reads the EVENT object alone."""
    return odoo_standin_factory(request_format="json", api_key=API_KEY, database="odoo")


async def test_json_format_posts_the_event_alone(http_standin: OdooStandin) -> None:
    """request_format json: the body is the EVENT object itself, with key and ?db= as before."""
    sender = OdooSender(
        base_url=http_standin.url, database="odoo", api_key=API_KEY, request_format="json"
    )
    try:
        event = make_event()
        await sender.send(event)
        assert http_standin.events == [event]
        assert http_standin.invalid == []
    finally:
        await sender.aclose()


@pytest.mark.parametrize(
    ("mode", "params", "permanent"),
    [
        ("validation_error", {}, True),  # an http controller raising it: 400
        ("status", {"status": 422}, True),
        ("status", {"status": 409}, True),
        ("rpc_error", {}, False),  # any other exception in the controller: 500
        ("down", {}, False),
        ("unauthorized", {}, False),
        ("status", {"status": 302}, False),
    ],
)
async def test_json_format_classifies_by_status(
    http_standin: OdooStandin, mode: str, params: dict[str, Any], permanent: bool
) -> None:
    """request_format json: the same failure classes by status code as CONTRACT §6."""
    sender = OdooSender(
        base_url=http_standin.url, database="odoo", api_key=API_KEY, request_format="json"
    )
    http_standin.set_mode(mode, **params)
    try:
        with pytest.raises(DeliveryError) as err:
            await sender.send(make_event())
        assert err.value.permanent is permanent
    finally:
        await sender.aclose()


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_json_format_success_is_any_2xx(http_standin: OdooStandin, status: int) -> None:
    """request_format json: any 2xx is a success, whatever the body says."""
    sender = OdooSender(
        base_url=http_standin.url, database="odoo", api_key=API_KEY, request_format="json"
    )
    http_standin.set_mode("status", status=status, body=b"" if status == 204 else "whatever")
    try:
        await sender.send(make_event())
    finally:
        await sender.aclose()


async def test_jsonrpc_envelope_is_refused_by_an_http_controller(
    http_standin: OdooStandin,
) -> None:
    """The default format against a type="http" route is a permanent 400 (misconfiguration)."""
    sender = OdooSender(base_url=http_standin.url, database="odoo", api_key=API_KEY)
    try:
        with pytest.raises(DeliveryError, match="HTTP 400") as err:
            await sender.send(make_event())
        assert err.value.permanent
    finally:
        await sender.aclose()


def test_unknown_request_format_is_refused() -> None:
    """A request format other than jsonrpc or json is a ValueError naming it."""
    with pytest.raises(ValueError, match="xml"):
        OdooSender(base_url="http://odoo:8069", request_format="xml")
