"""Subscriptions: the filters as the broker gets them, in batches, and their replies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import mqtt5

from iot_bridge.errors import ConfigError, ConfigIssue, MqttError
from iot_bridge.logs import get_logger
from iot_bridge.net.mqtt._connection import MqttConnection, describe_reason, reason_value
from iot_bridge.net.mqtt._handshake import FAILURE
from iot_bridge.topics import topic_filter_problem

log = get_logger(__name__)

SUBSCRIBE_BATCH = 1000  # topic filters per SUBSCRIBE packet (about 50 KB)


def subscription_filter(pattern: str) -> mqtt5.TopicFilter:
    # QoS 1 at most; retained messages only for a subscription the session did not
    # have yet (a resubscribe after reconnect must not replay stale retained values);
    # the retain flag then means "stored value", not "how it was published".
    return mqtt5.TopicFilter(
        pattern,
        max_qos=mqtt5.QoS.AT_LEAST_ONCE,
        retain_as_published=False,
        retain_handling=mqtt5.RetainHandling.SEND_IF_SUBSCRIPTION_NOT_EXISTS,
    )


def validated_filters(filters: Iterable[str]) -> frozenset[str]:
    if isinstance(filters, str):
        raise ConfigError(
            [ConfigIssue("subscriptions", "must be a collection of topic filters, not one string")],
            source="MQTT subscriptions",
        )
    chosen = list(filters)
    issues = [
        ConfigIssue("subscriptions", problem)
        for problem in map(topic_filter_problem, chosen)
        if problem is not None
    ]
    if issues:
        raise ConfigError(issues, source="MQTT subscriptions")
    # The ingestor's own frozenset is kept as it is: 20,000 filters are a 1 MiB table.
    return filters if isinstance(filters, frozenset) else frozenset(chosen)


async def await_reply(
    connection: MqttConnection,
    packet_id: int,
    reply: asyncio.Future[mqtt5.Packet],
    what: str,
    *,
    timeout_s: float,
    broker: str,
) -> mqtt5.Packet:
    """The broker's reply to request ``packet_id``; ``MqttError`` when none comes in time."""
    try:
        async with asyncio.timeout(timeout_s):
            return await reply
    except TimeoutError:
        connection.forget_request(packet_id)
        raise MqttError(
            f"no {what} from the MQTT broker at {broker} within {timeout_s:g} s"
        ) from None


async def apply_subscriptions(
    connection: MqttConnection,
    session_filters: set[str],
    *,
    subscribe: list[str],
    unsubscribe: list[str],
    timeout_s: float,
    broker: str,
) -> set[str]:
    """Subscribe and unsubscribe on ``connection``; ``session_filters`` (what the broker's
    session holds) follows each reply. Returns the set to keep (compacted after a big
    subscribe)."""
    # In batches: one SUBSCRIBE of 20,000 filters (10,000 devices) is about 1 MB,
    # more than many brokers take in one packet (EMQX's default limit is 1 MB).
    # All batches go out at once; then their SUBACKs are awaited.
    pending = []
    for start in range(0, len(subscribe), SUBSCRIBE_BATCH):
        batch = subscribe[start : start + SUBSCRIBE_BATCH]
        packet_id, reply = connection.new_request()
        connection.send(mqtt5.SubscribePacket(packet_id, [subscription_filter(f) for f in batch]))
        pending.append((batch, packet_id, reply))
    for batch, packet_id, reply in pending:
        suback = await await_reply(
            connection, packet_id, reply, "SUBACK", timeout_s=timeout_s, broker=broker
        )
        assert isinstance(suback, mqtt5.SubAckPacket)
        for pattern, code in zip(batch, suback.reason_codes, strict=False):
            if reason_value(code) >= FAILURE:
                log.warning(
                    "mqtt_subscribe_refused",
                    broker=broker,
                    topic_filter=pattern,
                    reason=describe_reason(code),
                )
            else:
                session_filters.add(pattern)
    requests = []
    for start in range(0, len(unsubscribe), SUBSCRIBE_BATCH):
        batch = unsubscribe[start : start + SUBSCRIBE_BATCH]
        packet_id, reply = connection.new_request()
        connection.send(mqtt5.UnsubscribePacket(packet_id, batch))
        requests.append((batch, packet_id, reply))
    for batch, packet_id, reply in requests:
        await await_reply(
            connection, packet_id, reply, "UNSUBACK", timeout_s=timeout_s, broker=broker
        )
        session_filters.difference_update(batch)
    if len(subscribe) > SUBSCRIBE_BATCH:
        # Grown one add at a time, a set's table ends up to twice the size a copy needs.
        return set(session_filters)
    return session_filters
