"""What every device parser offers, and the reasons it may refuse a message."""

from __future__ import annotations

from typing import Final, Literal, Protocol, get_args

from iot_bridge.domain.readings import Reading
from iot_bridge.parsers._channels import ChannelState

# The parser_type names (CONTRACT section 4), declared here only.
ParserType = Literal[
    "shelly_pm", "shelly_rpc", "shelly_gen1", "tasmota", "zigbee2mqtt", "generic_json"
]
PARSER_TYPES: Final[tuple[str, ...]] = get_args(ParserType)
SHELLY_PM, SHELLY_RPC, SHELLY_GEN1, TASMOTA, ZIGBEE2MQTT, GENERIC_JSON = PARSER_TYPES

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

    @property
    def channels(self) -> ChannelState | None:
        """The per-channel state of a multi-channel device (``None``: one channel, no state).

        ``parse`` updates it; the service persists ``channels.snapshot()`` with
        the detector's and hands it back with ``channels.resume``.
        """
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
