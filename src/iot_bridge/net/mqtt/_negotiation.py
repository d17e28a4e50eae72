"""Which protocol the next connect asks in: MQTT 5 first, MQTT 3.1.1 for brokers that refuse it.

A broker that refuses MQTT 5 (a 3.1.1 CONNACK with return code 1, an MQTT 5
CONNACK with reason 132, or no CONNACK at all: the connection closed or the
connect timeout passed, while no connect to this broker has ever been
accepted) is asked again at once in MQTT 3.1.1, logged once as
``mqtt_protocol_fallback``. Once a 3.1.1 connect is accepted the client keeps
3.1.1 for this broker; the same persistent session (``clean session``
false), QoS 1 subscriptions and manual acknowledgements apply.

``protocol_memory`` (the data dir's, ``protocol_memory.py``) carries that
across restarts: a broker written down as 3.1.1-only is asked in 3.1.1
first, with no timeout to sit out; once connected, a probe on a connection of
its own (``_probe.py``) asks in MQTT 5 whether the broker was upgraded, and if
so the client writes that down and reconnects in MQTT 5 at once
(``mqtt_protocol_upgrade``). Each accepted connect updates the memory.
"""

from __future__ import annotations

from collections.abc import Callable

import mqtt5

from iot_bridge.logs import get_logger
from iot_bridge.net.mqtt._connection import (
    MQTT_3_1_1,
    MQTT_5,
    MqttConnection,
    ProtocolVersion,
    reason_value,
)
from iot_bridge.net.mqtt._handshake import CONNACK_UNSUPPORTED_PROTOCOL, refusal_reason
from iot_bridge.net.mqtt.protocol_memory import ProtocolMemory

log = get_logger(__name__)


class Negotiation:
    """The protocol of the next connect, and what a refusal or silence does to it.

    ``connect_failed(connection, reason)`` fails the connection and records and
    logs the reason; ``set_error(text)`` records ``last_error`` alone.
    """

    def __init__(
        self,
        broker: str,
        memory: ProtocolMemory | None,
        *,
        connect_failed: Callable[[MqttConnection | None, str], None],
        set_error: Callable[[str], None],
    ) -> None:
        self._broker = broker
        self._memory = memory
        self._connect_failed = connect_failed
        self._set_error = set_error
        self.protocol: ProtocolVersion = MQTT_5  # what the next connect tries
        self.accepted: ProtocolVersion | None = None  # a CONNACK said success
        self.retry_now = False  # the next attempt is a protocol fallback: no backoff
        self._fallbacks = 0
        if memory is not None and memory.recall(broker) == MQTT_3_1_1:
            self.protocol = MQTT_3_1_1
            self.probe_pending = True  # once connected in 3.1.1: is it MQTT 5 by now?
        else:
            self.probe_pending = False

    def refused(self, connection: MqttConnection, connack: mqtt5.ConnAckPacket) -> None:
        """A CONNACK that refuses: another protocol at once, or a failure with its reason."""
        code = reason_value(connack.reason_code)
        if (
            code == CONNACK_UNSUPPORTED_PROTOCOL
            and self.protocol == MQTT_3_1_1
            and self.accepted is None
        ):
            # Remembered as 3.1.1-only, and now it refuses 3.1.1: ask in MQTT 5 at once.
            self.protocol = MQTT_5
            self.retry_now = True
            self._connect_failed(connection, "the broker refused MQTT 3.1.1; trying MQTT 5")
            return
        if code == CONNACK_UNSUPPORTED_PROTOCOL and self.protocol == MQTT_5:
            detail = f": {connack.reason_str}" if connack.reason_str else ""
            self.fall_back(
                connection, f"the broker refused MQTT 5 (unsupported protocol version{detail})"
            )
            return
        self._connect_failed(connection, refusal_reason(connack))

    def try_other(self, connection: MqttConnection | None, reason: str) -> bool:
        """No CONNACK (closed, or none in time): maybe the broker does not speak this protocol.

        Only while no connect was ever accepted: MQTT 5 falls back to 3.1.1, and a
        3.1.1 attempt that fares no better goes back to MQTT 5 for the next try
        (a broker that closes every connection is not a 3.1.1 broker).
        """
        if self.accepted is not None:
            return False
        if self.protocol == MQTT_5:
            self.fall_back(connection, f"MQTT 5 CONNECT unanswered: {reason}")
            return True
        self.protocol = MQTT_5
        log.debug("mqtt_protocol_retry", broker=self._broker, protocol=MQTT_5, reason=reason)
        return False

    def fall_back(self, connection: MqttConnection | None, reason: str) -> None:
        """Ask in MQTT 3.1.1 next, at once."""
        if connection is not None:
            connection.fail(reason)
        self.protocol = MQTT_3_1_1
        self.retry_now = True
        self._set_error(f"cannot connect to the MQTT broker at {self._broker}: {reason}")
        # Warned once; a broker that keeps closing unanswered connects repeats at debug.
        level = log.debug if self._fallbacks else log.warning
        self._fallbacks += 1
        level(
            "mqtt_protocol_fallback",
            broker=self._broker,
            from_protocol=MQTT_5,
            to_protocol=MQTT_3_1_1,
            reason=reason,
        )

    def connected(self, protocol: ProtocolVersion) -> None:
        """A connect in ``protocol`` was accepted: kept, and written down."""
        self.accepted = protocol
        if self._memory is not None:
            self._memory.remember(self._broker, protocol)

    def upgraded(self) -> None:
        """The probe found MQTT 5 on a broker remembered as 3.1.1-only."""
        log.info(
            "mqtt_protocol_upgrade",
            broker=self._broker,
            from_protocol=MQTT_3_1_1,
            to_protocol=MQTT_5,
        )
        if self._memory is not None:
            self._memory.remember(self._broker, MQTT_5)
        self.protocol = MQTT_5
        self.accepted = None  # MQTT 5 may fall back again if it fails after all
