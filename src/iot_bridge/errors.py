"""One exception hierarchy for the bridge.

Callers handle:
- ``ConfigError``: a config document, file or push is invalid (exit 2 / HTTP 422).
- ``PayloadError``: one device message cannot be used; count it, log it, drop it.
- ``StoreError``: the data dir or its database cannot be used; fatal (exit 1),
  except its child ``DiskFullError``: a write failed for lack of space, which
  heals when space is freed (the pipeline waits and retries, ``service/ingest/pipeline.py``).
- ``DeliveryError``: one delivery attempt to Odoo failed (``permanent`` says how).
- ``MqttError``: the broker connection failed; the client reconnects by itself.
Third-party errors are translated into these at the adapter that sees them.
"""

from __future__ import annotations

from dataclasses import dataclass


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config document: where (dotted path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


class ConfigError(BridgeError):
    """A config document is invalid; ``issues`` lists every problem with its path."""

    def __init__(self, issues: list[ConfigIssue], source: str = "config") -> None:
        self.issues = issues
        self.source = source
        summary = "; ".join(str(issue) for issue in issues[:5])
        more = f" (and {len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"invalid {source}: {summary}{more}")


class PayloadError(BridgeError):
    """A device message cannot be used.

    ``reason`` is a short, stable code used as a metrics label
    (``invalid_utf8``, ``invalid_json``, ``invalid_power``, ...);
    ``detail`` is a human sentence for the log.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail or reason
        super().__init__(f"{reason}: {self.detail}")


class StoreError(BridgeError):
    """The data dir or its SQLite database cannot be used."""


class DiskFullError(StoreError):
    """A write failed because the filesystem holding the data dir is full (or over quota).

    Nothing of the failed transaction was written, and the same write succeeds
    once space is freed: the caller may wait and try again. Every other
    ``StoreError`` (a corrupt database, a read-only or vanished data dir, an
    I/O error) cannot heal by waiting.
    """


class DeliveryError(BridgeError):
    """One delivery attempt failed; ``permanent`` failures make the event dead.

    ``endpoint`` says the failure is Odoo's as a whole, not this event's (no
    answer, or 5xx, 401/403/404, 408, 429): the sender then stops for every
    device and probes (``service/delivery/worker.py``).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after_s: float | None = None,
        endpoint: bool = False,
    ) -> None:
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        self.endpoint = endpoint
        super().__init__(message)


class MqttError(BridgeError):
    """The MQTT connection failed or the broker refused us."""
