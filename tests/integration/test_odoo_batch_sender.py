"""OdooBatchSender against the stand-in's ``/ows/iot/events``: envelope, auth, per-event
results, and the classification of a whole call's failure (CONTRACT §6)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from iot_bridge.adapters.odoo import OdooSender
from iot_bridge.adapters.odoo_batch import EVENTS_PATH, OdooBatchSender
from iot_bridge.bootstrap import odoo_sender
from iot_bridge.config.model import OdooSection
from iot_bridge.errors import DeliveryError
from iot_bridge.service.ports import BatchEventSender
from tests.integration.test_odoo_sender import API_KEY, make_event
from tests.support.odoo_standin import OdooStandin


@pytest.fixture
async def sender(odoo_standin: OdooStandin) -> AsyncIterator[OdooBatchSender]:
    """A batch sender pointed at the plain stand-in, with a short timeout."""
    sender = OdooBatchSender(base_url=odoo_standin.url, timeout_s=2.0)
    yield sender
    await sender.aclose()


async def test_a_batch_is_one_call_with_every_event_in_order(
    sender: OdooBatchSender, odoo_standin: OdooStandin
) -> None:
    """Three events go in one call to /ows/iot/events and arrive unchanged, in order."""
    events = [make_event("a"), make_event("b"), make_event("a")]
    assert await sender.send_batch(events) == [None, None, None]
    assert odoo_standin.events == events
    assert odoo_standin.received_count == 1
    call = odoo_standin.batches[0]
    assert call.path == EVENTS_PATH
    assert [uid for uid, _, _ in call.batch] == [e["event_uid"] for e in events]
    assert odoo_standin.invalid == []


async def test_api_key_and_database_are_sent(
    odoo_standin_factory: Callable[..., OdooStandin],
) -> None:
    """Bearer key and ?db= reach the batch route; a wrong key is an endpoint failure."""
    standin = odoo_standin_factory(api_key=API_KEY, database="odoo")
    good = OdooBatchSender(base_url=standin.url, database="odoo", api_key=API_KEY)
    wrong = OdooBatchSender(base_url=standin.url, database="odoo", api_key="nope")
    try:
        assert await good.send_batch([make_event(), make_event()]) == [None, None]
        with pytest.raises(DeliveryError) as err:
            await wrong.send_batch([make_event(), make_event()])
        assert "401" in str(err.value)
        assert err.value.endpoint and not err.value.permanent
        assert API_KEY not in str(err.value)
    finally:
        await good.aclose()
        await wrong.aclose()
    assert len(standin.events) == 2


async def test_per_event_results(sender: OdooBatchSender, odoo_standin: OdooStandin) -> None:
    """A ValidationError kills its event only; a transient error holds its device's later
    events (Skipped by Odoo); duplicates are successes; other devices are untouched."""
    already = make_event("a")
    await sender.send(already)
    events = [
        make_event("a"),  # 0 ok
        already,  # 1 duplicate
        make_event("a"),  # 2 ValidationError
        make_event("b"),  # 3 transient
        make_event("a"),  # 4 ok
        make_event("b"),  # 5 Skipped
        make_event("c"),  # 6 ok
    ]
    odoo_standin.add_rule("validation_error", event_uid=events[2]["event_uid"], times=1)
    odoo_standin.add_rule("rpc_error", event_uid=events[3]["event_uid"], times=1)
    outcomes = await sender.send_batch(events)
    assert [o is None for o in outcomes] == [True, True, False, False, True, False, True]
    dead, transient, skipped = outcomes[2], outcomes[3], outcomes[5]
    assert dead is not None and dead.permanent and "ValidationError" in str(dead)
    assert transient is not None and not transient.permanent and "AccessError" in str(transient)
    assert skipped is not None and not skipped.permanent and "Skipped" in str(skipped)
    assert not any(o.endpoint for o in outcomes if o is not None)
    uids = [e["event_uid"] for e in odoo_standin.events]
    assert uids == [already["event_uid"]] + [events[i]["event_uid"] for i in (0, 4, 6)]
    assert [status for _, _, status in odoo_standin.batches[-1].batch] == [
        "ok",
        "duplicate",
        "error",
        "error",
        "ok",
        "error",
        "ok",
    ]


async def test_a_malformed_event_is_refused_alone(
    sender: OdooBatchSender, odoo_standin: OdooStandin
) -> None:
    """An event lacking fields gets a ValidationError of its own; the others are taken."""
    good = make_event("a")
    outcomes = await sender.send_batch([{"event_uid": "broken", "device_id": "a"}, good])
    failure = outcomes[0]
    assert failure is not None and failure.permanent and "lacks" in str(failure)
    assert outcomes[1] is None
    assert odoo_standin.events == [good]
    assert len(odoo_standin.invalid) == 1


async def test_send_is_a_call_of_one_event(
    sender: OdooBatchSender, odoo_standin: OdooStandin
) -> None:
    """``send`` posts one event to the batch route; its per-event error is raised."""
    event = make_event()
    await sender.send(event)
    assert odoo_standin.events == [event]
    assert odoo_standin.batches[0].batch == ((event["event_uid"], "plug-1", "ok"),)
    bad = make_event()
    odoo_standin.add_rule("user_error", event_uid=bad["event_uid"])
    with pytest.raises(DeliveryError, match="UserError") as err:
        await sender.send(bad)
    assert err.value.permanent
    assert all(record.path == EVENTS_PATH for record in odoo_standin.requests)


# (mode, params, (permanent?, endpoint?)) of a whole call's failure.
WHOLE_CALL: list[tuple[str, dict[str, Any], tuple[bool, bool]]] = [
    *[("status", {"status": code}, (True, False)) for code in (400, 409, 413, 415, 422)],
    *[("status", {"status": code}, (False, True)) for code in (401, 403, 404, 408, 429, 500, 503)],
    *[("status", {"status": code}, (False, False)) for code in (201, 302, 410)],
    ("down", {}, (False, True)),
    ("rate_limited", {}, (False, True)),
    ("validation_error", {}, (True, False)),
    ("user_error", {}, (True, False)),
    ("rpc_error", {"name": "odoo.exceptions.AccessError"}, (False, False)),
    # A wrong bearer key as Odoo 18 answers it on a type="json" route: HTTP 200, this error.
    ("rpc_error", {"name": "werkzeug.exceptions.Unauthorized"}, (False, True)),
    ("status", {"status": 200, "body": "<html>maintenance</html>"}, (False, False)),
]


@pytest.mark.parametrize(
    ("mode", "params", "expected"),
    WHOLE_CALL,
    ids=[f"{m}-{p.get('status', p.get('name', ''))}" for m, p, _ in WHOLE_CALL],
)
async def test_whole_call_classification(
    sender: OdooBatchSender,
    odoo_standin: OdooStandin,
    mode: str,
    params: dict[str, Any],
    expected: tuple[bool, bool],
) -> None:
    """A failure of the whole call is classified by §6's rules, like the single route's."""
    odoo_standin.set_mode(mode, **params)
    with pytest.raises(DeliveryError) as err:
        await sender.send_batch([make_event("a"), make_event("b")])
    assert (err.value.permanent, err.value.endpoint) == expected
    assert odoo_standin.events == []


async def test_retry_after_of_a_whole_call(
    sender: OdooBatchSender, odoo_standin: OdooStandin
) -> None:
    """A 429 with Retry-After on the batch route carries the delay."""
    odoo_standin.set_mode("rate_limited", retry_after="12")
    with pytest.raises(DeliveryError) as err:
        await sender.send_batch([make_event(), make_event()])
    assert err.value.retry_after_s == 12.0


@pytest.mark.parametrize(
    "result",
    [
        {"results": []},
        {"results": None},
        None,
        {"status": "ok"},
    ],
)
async def test_a_result_that_does_not_match_is_transient_for_the_call(
    sender: OdooBatchSender, odoo_standin: OdooStandin, result: Any
) -> None:
    """HTTP 200 with a result of the wrong shape or count: transient, not endpoint."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": result})
    odoo_standin.set_mode("status", status=200, body=body, content_type="application/json")
    with pytest.raises(DeliveryError, match="does not match") as err:
        await sender.send_batch([make_event(), make_event()])
    assert not err.value.permanent and not err.value.endpoint


async def test_a_reply_over_one_mebibyte_is_read(odoo_standin: OdooStandin) -> None:
    """500 long error messages make a reply over 1 MiB: still read, per event."""
    sender = OdooBatchSender(base_url=odoo_standin.url)
    events = [make_event(f"d{n}") for n in range(500)]
    odoo_standin.add_rule("validation_error", message="x" * 3000)
    try:
        outcomes = await sender.send_batch(events)
    finally:
        await sender.aclose()
    assert all(o is not None and o.permanent for o in outcomes)


async def test_an_odoo_without_the_batch_route_is_a_transient_404(
    odoo_standin_factory: Callable[..., OdooStandin],
) -> None:
    """A stand-in playing a type="http" single route has no batch route: 404, endpoint."""
    standin = odoo_standin_factory(request_format="json")
    other = OdooBatchSender(base_url=standin.url)
    try:
        with pytest.raises(DeliveryError, match="404") as err:
            await other.send_batch([make_event(), make_event()])
        assert err.value.endpoint and not err.value.permanent
    finally:
        await other.aclose()


def test_only_the_batch_format() -> None:
    """The batch sender speaks only request_format batch."""
    sender = OdooBatchSender(base_url="http://odoo:8069")
    assert sender.request_format == "batch"
    assert sender.url == "http://odoo:8069/ows/iot/events"
    with pytest.raises(ValueError, match="request_format"):
        OdooSender(base_url="http://odoo:8069", request_format="batch")


@pytest.mark.parametrize(
    ("request_format", "batching", "path"),
    [
        ("batch", True, "/ows/iot/events"),
        ("jsonrpc", False, "/ows/iot/event"),
        ("json", False, "/ows/iot/event"),
    ],
)
def test_the_config_picks_the_sender(request_format: str, batching: bool, path: str) -> None:
    """odoo.request_format batch builds a batch sender (the worker batches); the others not."""
    section = OdooSection(
        base_url="http://odoo:8069", database="odoo", request_format=request_format
    )
    sender = odoo_sender(section)
    assert sender is not None
    assert isinstance(sender, BatchEventSender) is batching
    assert sender.url == "http://odoo:8069" + path
