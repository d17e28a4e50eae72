"""The batch route's request body and the reading of its per-event results (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from iot_bridge.adapters.odoo_batch import batch_body, encoded, read_results
from iot_bridge.domain.events import EncodedEvent
from iot_bridge.errors import DeliveryError
from iot_bridge.service.delivery.batching import ENVELOPE_BYTES

UIDS = ["u1", "u2", "u3"]


def ok(uid: str, status: str = "ok") -> dict[str, Any]:
    """A success entry."""
    return {"event_uid": uid, "status": status}


def error(uid: str, name: Any, message: str = "why") -> dict[str, Any]:
    """An error entry as Odoo's batch route answers it."""
    return {"event_uid": uid, "status": "error", "error": {"name": name, "message": message}}


def test_ok_and_duplicate_are_successes() -> None:
    """``ok`` and ``duplicate`` both mean Odoo has the event."""
    result = {"results": [ok("u1"), ok("u2", "duplicate"), ok("u3")]}
    assert read_results(result, UIDS) == [None, None, None]


@pytest.mark.parametrize(
    "name",
    [
        "odoo.exceptions.ValidationError",
        "odoo.exceptions.UserError",
        "odoo.addons.open_workshop_mqtt.EventValidationError",
    ],
)
def test_validation_and_user_errors_are_permanent(name: str) -> None:
    """An error whose name ends in ValidationError or UserError makes that event dead."""
    outcomes = read_results({"results": [ok("u1"), error("u2", name, "bad field"), ok("u3")]}, UIDS)
    assert outcomes[0] is None and outcomes[2] is None
    failure = outcomes[1]
    assert isinstance(failure, DeliveryError)
    assert failure.permanent and not failure.endpoint
    assert name in str(failure) and "bad field" in str(failure)


@pytest.mark.parametrize(
    "name",
    [
        "Skipped",
        "odoo.exceptions.AccessError",
        "psycopg2.errors.SerializationFailure",
        "builtins.KeyError",
        "ValidationErrorX",
        "",
        None,
        42,
    ],
)
def test_other_errors_are_transient_for_that_event(name: Any) -> None:
    """Any other error (Skipped included, a missing or odd name) is transient, never endpoint."""
    failure = read_results({"results": [error("u1", name)]}, ["u1"])[0]
    assert isinstance(failure, DeliveryError)
    assert not failure.permanent and not failure.endpoint


def test_an_error_without_an_error_object_is_transient() -> None:
    """``status: error`` with no or an odd ``error`` field is still that event's transient failure."""
    entries = [
        {"event_uid": "u1", "status": "error"},
        {"event_uid": "u2", "status": "error", "error": "database locked"},
    ]
    outcomes = read_results({"results": entries}, ["u1", "u2"])
    assert all(isinstance(o, DeliveryError) and not o.permanent for o in outcomes)
    assert "database locked" in str(outcomes[1])


@pytest.mark.parametrize("status", ["pending", None, 1, "OK"])
def test_an_unknown_status_is_transient(status: Any) -> None:
    """A status the contract does not name is retried, not taken as a success."""
    failure = read_results({"results": [{"event_uid": "u1", "status": status}]}, ["u1"])[0]
    assert isinstance(failure, DeliveryError) and not failure.permanent


@pytest.mark.parametrize(
    ("result", "detail"),
    [
        (None, "no results list"),
        ({"status": "ok"}, "no results list"),
        ({"results": {"u1": "ok"}}, "no results list"),
        ([ok("u1")], "no results list"),
        ({"results": [ok("u1"), ok("u2")]}, "2 results for 3 events"),
        ({"results": [ok("u1"), ok("u2"), ok("u3"), ok("u4")]}, "4 results for 3 events"),
        ({"results": [ok("u1"), ok("u3"), ok("u2")]}, "result 1 is not for event u2"),
        ({"results": [ok("u1"), "ok", ok("u3")]}, "result 1 is not for event u2"),
        ({"results": [ok("u1"), {"status": "ok"}, ok("u3")]}, "result 1 is not for event u2"),
    ],
)
def test_a_result_that_does_not_match_the_events_fails_the_whole_call(
    result: Any, detail: str
) -> None:
    """Not a results list, another count, or an event_uid out of place: transient for the call."""
    with pytest.raises(DeliveryError, match="does not match the events sent") as caught:
        read_results(result, UIDS)
    assert detail in str(caught.value)
    assert not caught.value.permanent and not caught.value.endpoint


def test_messages_are_scrubbed() -> None:
    """Odoo's message passes through ``scrub`` (the sender removes its API key there)."""
    result = {"results": [error("u1", "odoo.exceptions.AccessError", "key s3cr3t refused")]}
    failure = read_results(result, ["u1"], scrub=lambda text: text.replace("s3cr3t", "***"))[0]
    assert "s3cr3t" not in str(failure) and "***" in str(failure)


def test_batch_body_is_a_jsonrpc_call_with_the_events_in_order() -> None:
    """The events' stored JSON goes in as it is, in order, under params.events."""
    events = [
        EncodedEvent("u1", b'{"event_uid":"u1","device_id":"a"}'),
        EncodedEvent("u2", b'{"event_uid":"u2","device_id":"b"}'),
    ]
    body = batch_body(events)
    assert orjson.loads(body) == {
        "jsonrpc": "2.0",
        "method": "call",
        "id": "u1",
        "params": {
            "events": [{"event_uid": "u1", "device_id": "a"}, {"event_uid": "u2", "device_id": "b"}]
        },
    }


def test_the_envelope_fits_the_allowance_batching_counts() -> None:
    """Around the events and their commas, the envelope (with a UUID id) fits ENVELOPE_BYTES."""
    uid = "6b005e14-fae0-4b6b-8a83-79558f113563"
    events = [EncodedEvent(uid, b'{"event_uid":"%s"}' % uid.encode())] * 3
    body = batch_body(events)
    assert len(body) - sum(len(e.json) + 1 for e in events) <= ENVELOPE_BYTES


def test_batch_body_needs_an_event() -> None:
    """An empty batch is a programming error, said clearly."""
    with pytest.raises(ValueError, match="at least one event"):
        batch_body([])


def test_plain_mappings_are_encoded_once() -> None:
    """A plain EVENT mapping becomes its JSON text; an EncodedEvent is kept as it is."""
    stored = EncodedEvent("u1", b'{"event_uid":"u1"}')
    assert encoded(stored) is stored
    plain = encoded({"event_uid": "u2", "data": {}})
    assert plain.event_uid == "u2" and orjson.loads(plain.json) == {"event_uid": "u2", "data": {}}
