"""``odoo.request_format: batch``: several events a call to ``/ows/iot/events`` (CONTRACT §6).

The request is a JSON-RPC call like the single route's, with the events in a
list: ``{"jsonrpc": "2.0", "method": "call", "id": <the first event's
event_uid>, "params": {"events": [EVENT, ...]}}``, with the same ``?db=``,
``Authorization: Bearer`` and headers. Odoo answers ``{"results": [{"event_uid":
..., "status": "ok"|"duplicate"|"error", "error": {"name": ..., "message":
...}}, ...]}``, one per event in the order sent. ``read_results`` turns that
into one outcome per event:

- ``ok`` / ``duplicate``: None (Odoo has the event);
- ``error`` whose ``name`` ends in ``ValidationError`` or ``UserError``: a
  permanent ``DeliveryError`` (the event goes dead);
- any other ``error`` (``Skipped`` too: Odoo did not process an event after its
  device's transient failure) or an unknown status: a transient one.

A failure of the whole call is classified as the single route's replies are
(``OdooSender._classify``: status codes, JSON-RPC ``error``, no answer), and
so is a result that does not match the events sent (not ``{"results": [...]}``,
another count, an ``event_uid`` out of place): transient for the whole call,
since it says nothing about any one event.

``send`` is a call with one event, through the same route: the delivery
worker's one-at-a-time path (a permanent failure of a whole batch, a probe
while Odoo is down) so needs no second route on the Odoo side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from iot_bridge.adapters.odoo import (
    PERMANENT_ERROR_SUFFIXES,
    OdooSender,
    _rpc_error_parts,
    _snippet,
)
from iot_bridge.domain.events import EncodedEvent
from iot_bridge.errors import DeliveryError

EVENTS_PATH = "/ows/iot/events"
# A result may carry an error message per event; 500 of Odoo's can exceed 1 MiB.
MAX_REPLY_BYTES = 16 * 1024 * 1024
BATCH_TIMEOUT_S = 30.0
DELIVERED_STATUSES = frozenset({"ok", "duplicate"})


def encoded(event: Mapping[str, Any]) -> EncodedEvent:
    """``event`` as its JSON text (as stored), encoding a plain mapping once."""
    if isinstance(event, EncodedEvent):
        return event
    return EncodedEvent(str(event.get("event_uid")), orjson.dumps(dict(event)))


def batch_body(events: Sequence[EncodedEvent]) -> bytes:
    """The JSON-RPC request body carrying ``events`` (at least one), in order."""
    if not events:
        raise ValueError("a batch needs at least one event")
    return b"".join(
        (
            b'{"jsonrpc":"2.0","method":"call","id":',
            orjson.dumps(events[0].event_uid),
            b',"params":{"events":[',
            b",".join(event.json for event in events),
            b"]}}",
        )
    )


def read_results(
    result: Any,
    event_uids: Sequence[str],
    *,
    scrub: Callable[[str], str] = str,
) -> list[DeliveryError | None]:
    """One outcome per event sent, from the JSON-RPC ``result`` of a batch call.

    None is a success (``ok``, ``duplicate``); a ``DeliveryError`` (never
    ``endpoint``) is that event's failure, permanent or not (see the module
    doc). ``scrub`` cleans Odoo's messages (of the API key). Raises a transient
    ``DeliveryError`` when the result does not match the events sent.
    """
    entries = result.get("results") if isinstance(result, dict) else None
    if not isinstance(entries, list):
        raise _mismatch(scrub, f"no results list in {_snippet(repr(result))}")
    if len(entries) != len(event_uids):
        raise _mismatch(scrub, f"{len(entries)} results for {len(event_uids)} events")
    outcomes: list[DeliveryError | None] = []
    for index, (entry, event_uid) in enumerate(zip(entries, event_uids, strict=True)):
        if not isinstance(entry, dict) or entry.get("event_uid") != event_uid:
            raise _mismatch(scrub, f"result {index} is not for event {event_uid}")
        status = entry.get("status")
        if status in DELIVERED_STATUSES:
            outcomes.append(None)
        elif status == "error":
            error = entry.get("error")
            name, message = _rpc_error_parts({"data": error} if isinstance(error, dict) else error)
            outcomes.append(
                DeliveryError(
                    scrub(f"Odoo error {name or 'unknown'}: {message}"),
                    permanent=bool(name) and name.endswith(PERMANENT_ERROR_SUFFIXES),
                )
            )
        else:
            outcomes.append(
                DeliveryError(
                    scrub(f"Odoo answered status {_snippet(repr(status))} for this event"),
                    permanent=False,
                )
            )
    return outcomes


def _mismatch(scrub: Callable[[str], str], detail: str) -> DeliveryError:
    return DeliveryError(
        scrub(f"Odoo's batch result does not match the events sent: {detail}"), permanent=False
    )


class OdooBatchSender(OdooSender):
    """POSTs events to ``/ows/iot/events``, several a call, on keep-alive connections.

    ``timeout_s`` (30 s by default: a full call is 500 events of Odoo's work)
    bounds the connection set-up and, again, each whole exchange.
    """

    path = EVENTS_PATH
    request_formats = ("batch",)
    max_reply_bytes = MAX_REPLY_BYTES

    def __init__(
        self,
        *,
        base_url: str,
        database: str = "",
        api_key: str = "",
        timeout_s: float = BATCH_TIMEOUT_S,
    ) -> None:
        """Prepare the URL and headers; ``ValueError`` for a URL that is not http(s)."""
        super().__init__(
            base_url=base_url,
            database=database,
            api_key=api_key,
            timeout_s=timeout_s,
            request_format="batch",
        )

    def body(self, event: Mapping[str, Any]) -> bytes:
        """The request body of a call carrying this one event."""
        return batch_body([encoded(event)])

    async def send(self, event: Mapping[str, Any]) -> None:
        """Deliver one event in a call of its own; ``DeliveryError`` as for a batch's events."""
        (outcome,) = await self.send_batch([event])
        if outcome is not None:
            raise outcome

    async def send_batch(self, events: Sequence[Mapping[str, Any]]) -> list[DeliveryError | None]:
        """Each event's outcome in order (None: Odoo has it).

        Raises ``DeliveryError`` when the call as a whole failed.
        """
        batch = [encoded(event) for event in events]
        result = await self._post(batch_body(batch))
        return read_results(result, [event.event_uid for event in batch], scrub=self._scrub)
