"""The Odoo module's side of the config push, played for the e2e tests.

``OdooModule`` holds what the Odoo module keeps in its tables (the
``mqtt.device`` records, field names as in docs/ODOO.md, and one
``mqtt.broker`` record) and behaves like its model hooks in the seed:
``create``, ``write`` (of a field the bridge uses) and ``unlink`` change the
records and then POST the WHOLE list of active devices to the bridge's
``/config`` with the Bearer token (``_push_bridge_config()``); ``push()`` is the
"Push Config to Bridge" button. Every reply is recorded in ``replies``.

What a hook does with a reply follows docs/ODOO.md: a 422 raises
``PushRefusedError`` naming the records and rolls the change back (Odoo keeps
only what the bridge accepts); an unreachable bridge, a 5xx or a 401 is
recorded and does not block the change. The button raises ``PushFailedError``
for anything but 200.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import httpx

SESSION_FIELDS: Final = (
    "standby_threshold_w",
    "working_threshold_w",
    "start_debounce_s",
    "stop_debounce_s",
    "message_timeout_s",
    "heartbeat_interval_s",
)
RELEVANT_FIELDS: Final = frozenset(
    {"device_id", "name", "mqtt_topic", "parser_type", "parser_options", "active", *SESSION_FIELDS}
)
REQUIRED_FIELDS: Final = ("name", "device_id", "mqtt_topic")
# The defaults of the mqtt.device fields (docs/ODOO.md's sketch).
DEVICE_DEFAULTS: Final[dict[str, Any]] = {
    "parser_type": "shelly_pm",
    "parser_options": None,
    "standby_threshold_w": 5.0,
    "working_threshold_w": 50.0,
    "start_debounce_s": 3.0,
    "stop_debounce_s": 15.0,
    "message_timeout_s": 90.0,
    "heartbeat_interval_s": 300.0,
    "active": True,
    "notes": "",  # a field the bridge does not use: writing it pushes nothing
}
DEVICE_FIELDS: Final = frozenset({*REQUIRED_FIELDS, *DEVICE_DEFAULTS})


class PushRefusedError(Exception):
    """The bridge answered 422 to a hook's push; the change was rolled back."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class PushFailedError(Exception):
    """The button's push did not get a 200 (unreachable bridge, 401, 5xx, ...)."""


@dataclass(frozen=True, slots=True)
class BrokerRecord:
    """The ``mqtt.broker`` record whose settings go into the document's ``mqtt`` section."""

    host: str
    port: int
    username: str = ""
    password: str = ""
    client_id: str = "iot_bridge"
    use_tls: bool = False

    def section(self) -> dict[str, Any]:
        """The ``mqtt`` section of the pushed document."""
        return {
            "broker": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "client_id": self.client_id,
            "use_tls": self.use_tls,
        }


@dataclass(frozen=True, slots=True)
class PushReply:
    """One push and what came back: ``status_code`` None when the bridge was unreachable."""

    trigger: str  # "create", "write", "unlink" or "button"
    devices_sent: tuple[str, ...]
    status_code: int | None
    body: dict[str, Any] | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the bridge accepted the document (HTTP 200)."""
        return self.status_code == 200


class OdooModule:
    """``mqtt.device`` records plus the hooks that push them to one bridge."""

    def __init__(
        self,
        *,
        bridge_url: str,
        token: str | None = None,
        broker: BrokerRecord | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """``bridge_url`` is ``open_workshop_mqtt.bridge_url``; ``token`` the bridge's API token."""
        self.bridge_url = bridge_url.rstrip("/")
        self.token = token
        self.broker = broker
        self.replies: list[PushReply] = []
        self._records: list[dict[str, Any]] = []
        self._client = httpx.Client(timeout=timeout_s)

    def __enter__(self) -> OdooModule:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    # -- the records ---------------------------------------------------------------

    @property
    def records(self) -> list[dict[str, Any]]:
        """Copies of the ``mqtt.device`` records, in creation order."""
        return copy.deepcopy(self._records)

    def record(self, device_id: str) -> dict[str, Any]:
        """A copy of one record; KeyError if there is none with that ``device_id``."""
        return copy.deepcopy(self._find(device_id))

    def document(self) -> dict[str, Any]:
        """The body ``_push_bridge_config()`` sends: every active device, the broker."""
        document: dict[str, Any] = {
            "devices": [_bridge_device(record) for record in self._records if record["active"]],
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "version": "1.0",
        }
        if self.broker is not None:
            document["mqtt"] = self.broker.section()
        return document

    # -- the model hooks -----------------------------------------------------------

    def create(self, vals: dict[str, Any]) -> PushReply:
        """``mqtt.device.create(vals)`` then a push; ValueError for bad vals (nothing pushed)."""
        _check_fields(vals)
        missing = [name for name in REQUIRED_FIELDS if not vals.get(name)]
        if missing:
            raise ValueError(f"mqtt.device: required field(s) missing: {', '.join(missing)}")
        if any(record["device_id"] == vals["device_id"] for record in self._records):
            raise ValueError(f"mqtt.device: device_id {vals['device_id']!r} exists already")
        before = copy.deepcopy(self._records)
        self._records.append({**copy.deepcopy(DEVICE_DEFAULTS), **copy.deepcopy(vals)})
        return self._hook_push("create", before)

    def write(self, device_id: str, vals: dict[str, Any]) -> PushReply | None:
        """``record.write(vals)``; pushes only when a field the bridge uses changed."""
        _check_fields(vals)
        record = self._find(device_id)
        new_id = vals.get("device_id", device_id)
        if new_id != device_id and any(r["device_id"] == new_id for r in self._records):
            raise ValueError(f"mqtt.device: device_id {new_id!r} exists already")
        before = copy.deepcopy(self._records)
        record.update(copy.deepcopy(vals))
        if not RELEVANT_FIELDS & vals.keys():
            return None
        return self._hook_push("write", before)

    def unlink(self, device_id: str) -> PushReply:
        """``record.unlink()`` then a push of the remaining devices."""
        record = self._find(device_id)
        before = copy.deepcopy(self._records)
        self._records.remove(record)
        return self._hook_push("unlink", before)

    def push(self) -> PushReply:
        """The "Push Config to Bridge" button: push now; PushFailedError unless 200."""
        reply = self._post("button")
        if not reply.ok:
            detail = reply.error
            if reply.status_code is not None:
                detail = f"HTTP {reply.status_code}: {reply.error}"
            raise PushFailedError(
                f"the bridge at {self.bridge_url} did not take the push: {detail}"
            )
        return reply

    # -- internals -----------------------------------------------------------------

    def _find(self, device_id: str) -> dict[str, Any]:
        for record in self._records:
            if record["device_id"] == device_id:
                return record
        raise KeyError(f"mqtt.device: no record with device_id {device_id!r}")

    def _hook_push(self, trigger: str, before: list[dict[str, Any]]) -> PushReply:
        reply = self._post(trigger)
        if reply.status_code == 422:
            sent = [record for record in self._records if record["active"]]
            self._records = before  # the UserError rolls the transaction back
            errors = list((reply.body or {}).get("errors", []))
            lines = [_error_line(error, sent) for error in errors]
            raise PushRefusedError(
                "The bridge refused the configuration:\n" + "\n".join(lines), errors
            )
        return reply

    def _post(self, trigger: str) -> PushReply:
        document = self.document()
        sent = tuple(device["device_id"] for device in document["devices"])
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = self._client.post(
                f"{self.bridge_url}/config", json=document, headers=headers
            )
        except httpx.HTTPError as err:
            reply = PushReply(trigger, sent, None, None, f"bridge unreachable: {err}")
        else:
            try:
                body = response.json()
            except ValueError:
                body = None
            reply = PushReply(
                trigger,
                sent,
                response.status_code,
                body if isinstance(body, dict) else None,
                None if response.status_code == 200 else response.text[:200],
            )
        self.replies.append(reply)
        return reply


def _check_fields(vals: dict[str, Any]) -> None:
    unknown = sorted(set(vals) - DEVICE_FIELDS)
    if unknown:
        raise ValueError(f"mqtt.device has no field(s) {', '.join(unknown)}")


def _bridge_device(record: dict[str, Any]) -> dict[str, Any]:
    device: dict[str, Any] = {
        "device_id": record["device_id"],
        "machine_name": record["name"],
        "mqtt_topic": record["mqtt_topic"],
        "parser_type": record["parser_type"],
        "session_config": {name: record[name] for name in SESSION_FIELDS},
    }
    if record["parser_options"]:
        device["parser_options"] = record["parser_options"]
    return device


def _error_line(error: dict[str, Any], sent: list[dict[str, Any]]) -> str:
    path = str(error.get("path", ""))
    parts = path.split(".")
    where = ""
    if (
        len(parts) > 1
        and parts[0] == "devices"
        and parts[1].isdigit()
        and int(parts[1]) < len(sent)
    ):
        where = f"{sent[int(parts[1])]['name']}: "
    return f"{where}{path}: {error.get('message', '')}"
