"""What every device parser offers, and the reasons it may refuse a message."""

from __future__ import annotations

from typing import Final, Protocol

from iot_bridge.domain.readings import Reading

# PayloadError.reason codes: short and stable, they are Prometheus label values.
EMPTY_PAYLOAD: Final = "empty_payload"
INVALID_UTF8: Final = "invalid_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
INVALID_POWER: Final = "invalid_power"
INVALID_ENERGY: Final = "invalid_energy"
UNKNOWN_TOPIC: Final = "unknown_topic"
INVALID_AVAILABILITY: Final = "invalid_availability"

PAYLOAD_ERROR_REASONS: Final[tuple[str, ...]] = (
    EMPTY_PAYLOAD,
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    INVALID_POWER,
    INVALID_ENERGY,
    UNKNOWN_TOPIC,
    INVALID_AVAILABILITY,
)

# A message that carries no power and no energy: a sign of life. Readings are
# immutable, so one shared instance saves an allocation on a common path.
SIGN_OF_LIFE: Final = Reading(None, None)


class DeviceParser(Protocol):
    """Turns one device's MQTT messages into readings; pure, no I/O, no clock.

    Built once per device by ``make_parser``; everything that can be decided
    from the config is decided then, so ``parse`` only reads the payload.
    """

    @property
    def parser_type(self) -> str:
        """One of ``PARSER_TYPES``."""
        ...

    @property
    def mqtt_topic(self) -> str:
        """The device's configured data topic (an MQTT topic filter)."""
        ...

    @property
    def data_topics(self) -> tuple[str, ...]:
        """Topic filters to subscribe for data; the first is ``mqtt_topic``."""
        ...

    @property
    def availability_topic(self) -> str | None:
        """Topic filter of the device's online/offline flag, or ``None``."""
        ...

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Read one message received on ``topic`` (one of ``data_topics``).

        Returns ``Reading(None, None)`` for a sign of life. Raises
        ``PayloadError`` (and nothing else) when the message cannot be used.
        """
        ...

    def parse_availability(self, payload: bytes) -> bool:
        """Read one availability message: ``True`` is online.

        Raises ``PayloadError`` (and nothing else) for an unknown payload.
        """
        ...
