"""Device message parsers: (topic, payload bytes) -> Reading, with no I/O and no clock.

One parser per device, built once by ``make_parser`` from the device's
``parser_type``, ``mqtt_topic`` and ``parser_options``; every config decision
is made then, so ``parse`` only decodes the payload. A three-phase or
multi-channel device's parser also keeps each channel's latest power and
counter (``ChannelState``, its ``channels``) and returns their sums; a
single-channel parser keeps nothing. ``parse`` and
``parse_availability`` raise ``PayloadError`` and nothing else; its
``reason`` is one of ``PAYLOAD_ERROR_REASONS``. See docs/DEVICES.md.
"""

from __future__ import annotations

from iot_bridge.parsers._base import PARSER_TYPES, PAYLOAD_ERROR_REASONS, DeviceParser, ParserType
from iot_bridge.parsers._channels import ChannelState
from iot_bridge.parsers._factory import make_parser

__all__ = [
    "PARSER_TYPES",
    "PAYLOAD_ERROR_REASONS",
    "ChannelState",
    "DeviceParser",
    "ParserType",
    "make_parser",
]
