# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What an event changes in its session and in its machine's live state, without Odoo.

Both routes (one event a call, or a batch) apply events in order with these
rules, to plain dicts that stand for the records: ``mqtt.event`` reads the
records once, runs every event of a machine through the rules, and writes
each record once. The rules:

- A session's totals are absolute values from the last event (a re-sent
  heartbeat changes nothing); the stop or timeout writes the final figures;
  a closed session is never reopened.
- A machine's live state follows its newest event (``stamp``: the event's
  time to the microsecond); an older event re-sent late does not overwrite it.

A session dict has the fields of ``SESSION_FIELDS`` and ``session_uuid``; a
machine dict has those of ``LIVE_FIELDS``, where ``current_session_id`` holds
the current session's ``session_uuid`` (or False), not its id.
"""

from datetime import timedelta

from .events import CLOSING_TYPES

SESSION_FIELDS = (
    "status",
    "machine_state",
    "started_at",
    "ended_at",
    "duration_s",
    "working_s",
    "standby_s",
    "energy_wh",
    "avg_power_w",
    "peak_power_w",
    "power_w",
    "end_reason",
    "last_stamp",
)
LIVE_FIELDS = ("online", "last_seen", "state", "power_w", "current_session_id", "live_stamp")


def session_started_at(event):
    """When the session of the first of its events to arrive (any session_* type) began."""
    data = event.data
    return data.get("started_at") or (
        event.at - timedelta(seconds=data.get("session_duration_s", 0.0))
    )


def session_changes(event, session):
    """The values a session_* event writes to its session (``session``: its values now)."""
    data = event.data
    if event.event_type in CLOSING_TYPES:
        # The final figures replace whatever the heartbeats wrote, even on a re-send.
        return {
            "status": "timeout" if event.event_type == "session_timeout" else "stopped",
            "started_at": data["started_at"],
            "ended_at": data["ended_at"],
            "duration_s": data["duration_s"],
            "working_s": data["working_s"],
            "standby_s": data["standby_s"],
            "avg_power_w": data.get("avg_power_w", 0.0),
            "peak_power_w": data.get("peak_power_w", session["peak_power_w"]),
            "energy_wh": data.get("energy_wh", session["energy_wh"]),
            "end_reason": data["reason"],
            "machine_state": False,
            "power_w": 0.0,
            "last_stamp": event.stamp,
        }
    newer = not session["last_stamp"] or event.stamp >= session["last_stamp"]
    values = {}
    if event.event_type == "session_started":
        values["started_at"] = data["started_at"]
    if session["status"] == "running" and newer:
        values["last_stamp"] = event.stamp
        if "state" in data:
            values["machine_state"] = data["state"]
        if "power_w" in data:
            values["power_w"] = data["power_w"]
            values["peak_power_w"] = max(session["peak_power_w"], data["power_w"])
        if event.event_type == "session_heartbeat":
            # absolute totals: a re-sent heartbeat writes the same values again
            values.update(
                duration_s=data["session_duration_s"],
                working_s=data["session_working_s"],
                standby_s=data["session_standby_s"],
            )
            if "session_energy_wh" in data:
                values["energy_wh"] = data["session_energy_wh"]
    elif session["status"] != "running" and session["started_at"] and "started_at" in values:
        # a late start of a closed session fills in only what is missing
        del values["started_at"]
    return values


def live_changes(event, machine, session, current):
    """The values an event writes to its machine's live state; empty when it writes none.

    ``machine``: the machine's live values now; ``session``: the event's session
    after the event (None for a status event); ``current``: the machine's current
    session (None when it has none).
    """
    data = event.data
    kind = event.event_type
    if kind in ("device_online", "device_offline"):
        online = kind == "device_online"
        values = {"online": online, "last_seen": data.get("last_seen", event.at)}
        if not online:
            values.update(state="offline", power_w=0.0)
        elif machine["state"] == "offline":
            running = current is not None and current["status"] == "running"
            values["state"] = (running and current["machine_state"]) or "idle"
    elif kind in CLOSING_TYPES:
        if current is not None and current["session_uuid"] != session["session_uuid"]:
            return {}  # a late stop of an older session: another one runs now
        values = {
            "current_session_id": False,
            "state": "offline" if machine["state"] == "offline" else "idle",
            "power_w": 0.0,
            "last_seen": data["ended_at"] if kind == "session_timeout" else event.at,
        }
    else:
        if session["status"] != "running":
            return {}  # a late start or heartbeat of a closed session
        values = {
            "online": True,
            "last_seen": event.at,
            "current_session_id": session["session_uuid"],
            "state": data.get("state") or machine["state"],
        }
        if "power_w" in data:
            values["power_w"] = data["power_w"]
    if machine["live_stamp"] and event.stamp < machine["live_stamp"]:
        return {}
    values["live_stamp"] = event.stamp
    last_seen = machine["last_seen"]
    if "last_seen" in values and last_seen and values["last_seen"] < last_seen:
        del values["last_seen"]
    return values
