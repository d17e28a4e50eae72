"""The bridge's MQTT 5 client: persistent session, manual QoS 1 acks, reconnect forever.

Brokers that do not speak MQTT 5 get MQTT 3.1.1 instead (see ``MqttClient``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import time
from collections.abc import Iterable

import mqtt5

from iot_bridge.backoff import Backoff
from iot_bridge.errors import ConfigError, ConfigIssue, MqttError
from iot_bridge.logs import get_logger
from iot_bridge.net.mqtt._connection import (
    MQTT_3_1_1,
    MQTT_5,
    READ_COALESCE_S,
    InboundQueue,
    MqttConnection,
    ProtocolVersion,
    describe_reason,
    reason_value,
)
from iot_bridge.net.mqtt._probe import speaks_mqtt5
from iot_bridge.net.mqtt.messages import InboundMessage
from iot_bridge.net.mqtt.protocol_memory import ProtocolMemory
from iot_bridge.net.mqtt.settings import MqttSettings
from iot_bridge.service.ports import SourceMessage
from iot_bridge.topics import topic_filter_problem, topic_name_problem

log = get_logger(__name__)

_CONNACK_BAD_CREDENTIALS = 134
_CONNACK_NOT_AUTHORIZED = 135
_CONNACK_UNSUPPORTED_PROTOCOL = 132  # also what a 3.1.1 CONNACK's return code 1 becomes
_FAILURE = 0x80  # reason codes from 0x80 on are failures (MQTT 5 section 2.4)


def _subscription_filter(pattern: str) -> mqtt5.TopicFilter:
    # QoS 1 at most; retained messages only for a subscription the session did not
    # have yet (a resubscribe after reconnect must not replay stale retained values);
    # the retain flag then means "stored value", not "how it was published".
    return mqtt5.TopicFilter(
        pattern,
        max_qos=mqtt5.QoS.AT_LEAST_ONCE,
        retain_as_published=False,
        retain_handling=mqtt5.RetainHandling.SEND_IF_SUBSCRIPTION_NOT_EXISTS,
    )


def _validated_filters(filters: Iterable[str]) -> frozenset[str]:
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


# A connection that lasted this long resets the reconnect backoff; one that
# drops sooner (session takeover, a broker closing on SUBSCRIBE) keeps backing off.
STABLE_S = 30.0
SUBSCRIBE_BATCH = 1000  # topic filters per SUBSCRIBE packet (about 50 KB)


class MqttClient:
    """An asyncio MQTT 5 client for the bridge, on the ``mqtt5`` sans-IO codec.

    ``run()`` connects and reconnects forever (randomised exponential backoff,
    0.5 s to 30 s, reset after each successful connect) until ``close()``. On every
    connect it subscribes all wanted filters with QoS 1. Received messages queue
    up for ``receive_batch()``; QoS 1 messages are acknowledged only by ``ack()``.
    All methods must be called from the event loop that runs ``run()``.

    ``max_queue`` bounds the received messages not yet taken (past it the socket
    is not read: TCP back-pressure). ``rng`` seeds the default ``backoff``;
    ``backoff`` replaces it (tests use short delays). ``connect_timeout_s`` covers
    TCP, TLS and CONNACK; ``request_timeout_s`` a SUBACK, UNSUBACK or PUBACK.
    ``read_coalesce_s`` is the short pause after a small socket read (see
    ``_connection.py``); 0 turns it off.

    Protocol: MQTT 5 first. A broker that refuses it (a 3.1.1 CONNACK with
    return code 1, an MQTT 5 CONNACK with reason 132, or no CONNACK at all: the
    connection closed or ``connect_timeout_s`` passed, while no connect to this
    broker has ever been accepted) is asked again at once in MQTT 3.1.1, logged
    once as ``mqtt_protocol_fallback``. Once a 3.1.1 connect is accepted the
    client keeps 3.1.1 for this broker; the same persistent session (``clean
    session`` false), QoS 1 subscriptions and manual acknowledgements apply.
    ``protocol`` says which one is in use.

    ``protocol_memory`` (the data dir's, ``protocol_memory.py``) carries that
    across restarts: a broker written down as 3.1.1-only is asked in 3.1.1
    first, with no timeout to sit out; once connected, a probe on a connection
    of its own (``_probe.py``) asks in MQTT 5 whether the broker was upgraded,
    and if so the client writes that down and reconnects in MQTT 5 at once
    (``mqtt_protocol_upgrade``). Each accepted connect updates the memory.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        subscriptions: Iterable[str] = (),
        max_queue: int = 100_000,
        rng: random.Random | None = None,
        backoff: Backoff | None = None,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        read_coalesce_s: float = READ_COALESCE_S,
        protocol_memory: ProtocolMemory | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self._settings = settings
        self._wanted = _validated_filters(subscriptions)
        self._backoff = backoff or Backoff(rng=rng)
        self._connected_at: float | None = None
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._read_coalesce_s = read_coalesce_s
        self._queue = InboundQueue(max_queue)
        self._connection: MqttConnection | None = None
        self._generation = 0
        self._connected = False
        self._connections = 0
        self._last_error: str | None = None
        self._session_filters: set[str] = set()  # what we believe the broker session holds
        # asyncio primitives bind to a loop only when first awaited, so they can be built here.
        self._subscription_lock = asyncio.Lock()
        self._connected_event = asyncio.Event()
        self._closing_event = asyncio.Event()
        self._stopped_event = asyncio.Event()
        self._attempt: asyncio.Task[None] | None = None
        self._run_started = False
        self._closing = False
        self._protocol: ProtocolVersion = MQTT_5  # what the next connect tries
        self._protocol_accepted: ProtocolVersion | None = None  # a CONNACK said success
        self._retry_now = False  # the next attempt is a protocol fallback: no backoff
        self._fallbacks = 0
        self._memory = protocol_memory
        self._probe: asyncio.Task[None] | None = None
        if protocol_memory is not None and protocol_memory.recall(settings.broker) == MQTT_3_1_1:
            self._protocol = MQTT_3_1_1
            self._probe_pending = True  # once connected in 3.1.1: is it MQTT 5 by now?
        else:
            self._probe_pending = False

    # --- read-only state ----------------------------------------------------

    @property
    def settings(self) -> MqttSettings:
        """The settings this client was built with (build a new client to change them)."""
        return self._settings

    @property
    def broker(self) -> str:
        """``host:port`` of the broker."""
        return self._settings.broker

    @property
    def connected(self) -> bool:
        """True once connected and subscribed, until the connection drops."""
        return self._connected

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closing

    @property
    def protocol(self) -> ProtocolVersion | None:
        """``"5"`` or ``"3.1.1"``: the protocol the broker accepted; None before that."""
        return self._protocol_accepted

    @property
    def connection_count(self) -> int:
        """How many times this client connected and subscribed (each reconnect adds one)."""
        return self._connections

    @property
    def last_error(self) -> str | None:
        """Why the last connect failed or the connection dropped; None while connected."""
        return self._last_error

    @property
    def subscriptions(self) -> frozenset[str]:
        """The wanted topic filters (subscribed on every connect)."""
        return self._wanted

    @property
    def queued(self) -> int:
        """Messages received and not yet taken by ``receive_batch``."""
        return len(self._queue.items)

    # --- the connection loop ------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; returns after ``close()``."""
        if self._run_started:
            raise MqttError("MqttClient.run() can only be called once")
        self._run_started = True
        try:
            while not self._closing:
                self._attempt = asyncio.create_task(
                    self._connect_and_serve(), name=f"mqtt-connection {self.broker}"
                )
                try:
                    await self._attempt
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not self._closing or (task is not None and task.cancelling()):
                        raise
                    break
                if self._closing:
                    break
                if self._retry_now:
                    self._retry_now = False
                    continue
                connected_at, self._connected_at = self._connected_at, None
                if connected_at is not None and time.monotonic() - connected_at >= STABLE_S:
                    self._backoff.reset()
                delay_s = self._backoff.next_delay()
                log.debug(
                    "mqtt_reconnect_scheduled", broker=self.broker, retry_in_s=round(delay_s, 3)
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_s):
                        await self._closing_event.wait()
        finally:
            if self._attempt is not None and not self._attempt.done():
                self._attempt.cancel()
            if self._connection is not None and self._connection.is_open:
                self._connection.fail("client stopped")
            self._set_disconnected()
            self._queue.close()
            self._stopped_event.set()

    async def _connect_and_serve(self) -> None:
        connection = await self._connect()
        if connection is None:
            return
        keepalive = asyncio.create_task(
            self._keepalive(connection), name=f"mqtt-keepalive {self.broker}"
        )
        try:
            reason = await connection.lost
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            self._set_disconnected()
        if self._closing:
            log.info("mqtt_disconnected", broker=self.broker, reason="closed by the bridge")
            return
        self._last_error = f"lost the connection to the MQTT broker at {self.broker}: {reason}"
        log.warning("mqtt_disconnected", broker=self.broker, reason=reason)

    async def _connect(self) -> MqttConnection | None:
        """One connect attempt; returns the connection once subscribed, or None."""
        settings = self._settings
        loop = asyncio.get_running_loop()
        self._generation += 1
        generation = self._generation
        queue = self._queue
        connection: MqttConnection | None = None
        try:
            ssl_context = self._ssl_context() if settings.use_tls else None
        except OSError as err:  # ssl.SSLError is an OSError too
            reason = err.strerror or str(err)
            self._connect_failed(None, f"cannot load the CA file {settings.ca_file!r}: {reason}")
            return None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: MqttConnection(
                        queue,
                        generation,
                        read_coalesce_s=self._read_coalesce_s,
                        protocol=self._protocol,
                    ),
                    settings.host,
                    settings.port,
                    ssl=ssl_context,
                    server_hostname=settings.host if ssl_context is not None else None,
                )
                self._connection = connection
                connection.send(self._connect_packet())
                connack = await connection.connack
        except TimeoutError:
            reason = f"no answer within {self._connect_timeout_s:g} s"
            # Connected but no CONNACK: some 3.1.1-only brokers misread an MQTT 5
            # CONNECT as an unfinished packet and wait for bytes that never come.
            if connection is not None and self._try_other_protocol(connection, reason):
                return None
            self._connect_failed(connection, reason)
            return None
        except ssl.SSLError as err:
            self._connect_failed(connection, f"TLS failed: {_ssl_reason(err)}")
            return None
        except socket.gaierror as err:
            self._connect_failed(connection, f"cannot resolve the host name: {err.strerror}")
            return None
        except (UnicodeError, ValueError) as err:  # e.g. IDNA: empty label, label over 63
            self._connect_failed(connection, f"invalid host name {settings.host!r}: {err}")
            return None
        except OSError as err:
            self._connect_failed(connection, _os_reason(err))
            return None
        except MqttError as err:
            reason = f"{err} before accepting the connection"
            if self._try_other_protocol(connection, reason):
                return None
            self._connect_failed(connection, f"{reason} (wrong port, or TLS on one side only?)")
            return None
        if reason_value(connack.reason_code) != 0:
            self._refused(connection, connack)
            return None
        return await self._on_connected(connection, connack)

    def _refused(self, connection: MqttConnection, connack: mqtt5.ConnAckPacket) -> None:
        """A CONNACK that refuses: another protocol at once, or a failure with its reason."""
        code = reason_value(connack.reason_code)
        if (
            code == _CONNACK_UNSUPPORTED_PROTOCOL
            and self._protocol == MQTT_3_1_1
            and self._protocol_accepted is None
        ):
            # Remembered as 3.1.1-only, and now it refuses 3.1.1: ask in MQTT 5 at once.
            self._protocol = MQTT_5
            self._retry_now = True
            self._connect_failed(connection, "the broker refused MQTT 3.1.1; trying MQTT 5")
            return
        if code == _CONNACK_UNSUPPORTED_PROTOCOL and self._protocol == MQTT_5:
            detail = f": {connack.reason_str}" if connack.reason_str else ""
            self._fall_back(
                connection, f"the broker refused MQTT 5 (unsupported protocol version{detail})"
            )
            return
        detail = f" ({connack.reason_str})" if connack.reason_str else ""
        if code == _CONNACK_BAD_CREDENTIALS:
            reason = "the broker rejected the username or password"
        elif code == _CONNACK_NOT_AUTHORIZED:
            reason = "the broker says not authorized (check the username and password)"
        else:
            reason = f"the broker refused the connection: {describe_reason(connack.reason_code)}"
        self._connect_failed(connection, f"{reason} (CONNACK reason {code}){detail}")

    def _try_other_protocol(self, connection: MqttConnection | None, reason: str) -> bool:
        """No CONNACK (closed, or none in time): maybe the broker does not speak this protocol.

        Only while no connect was ever accepted: MQTT 5 falls back to 3.1.1, and a
        3.1.1 attempt that fares no better goes back to MQTT 5 for the next try
        (a broker that closes every connection is not a 3.1.1 broker).
        """
        if self._protocol_accepted is not None:
            return False
        if self._protocol == MQTT_5:
            self._fall_back(connection, f"MQTT 5 CONNECT unanswered: {reason}")
            return True
        self._protocol = MQTT_5
        log.debug("mqtt_protocol_retry", broker=self.broker, protocol=MQTT_5, reason=reason)
        return False

    def _fall_back(self, connection: MqttConnection | None, reason: str) -> None:
        if connection is not None:
            connection.fail(reason)
        self._protocol = MQTT_3_1_1
        self._retry_now = True
        self._last_error = f"cannot connect to the MQTT broker at {self.broker}: {reason}"
        # Warned once; a broker that keeps closing unanswered connects repeats at debug.
        level = log.debug if self._fallbacks else log.warning
        self._fallbacks += 1
        level(
            "mqtt_protocol_fallback",
            broker=self.broker,
            from_protocol=MQTT_5,
            to_protocol=MQTT_3_1_1,
            reason=reason,
        )

    async def _on_connected(
        self, connection: MqttConnection, connack: mqtt5.ConnAckPacket
    ) -> MqttConnection | None:
        self._connected_at = time.monotonic()
        self._protocol_accepted = connection.protocol
        if self._memory is not None:
            self._memory.remember(self.broker, connection.protocol)
        if connack.session_present:
            dropped = self._queue.drop_stale_qos1(connection.generation)
            if dropped:
                log.info("mqtt_stale_messages_dropped", count=dropped, reason="broker redelivers")
        else:
            self._session_filters.clear()
        try:
            async with self._subscription_lock:
                await self._apply_subscriptions(
                    connection,
                    subscribe=sorted(self._wanted),
                    unsubscribe=sorted(self._session_filters - self._wanted),
                )
        except MqttError as err:
            reason = f"subscribing failed: {err}"
            connection.fail(reason)
            self._connect_failed(None, reason)
            return None
        if not connection.is_open:
            self._connect_failed(None, "the connection dropped while subscribing")
            return None
        self._last_error = None
        self._connections += 1
        self._connected = True
        self._connected_event.set()
        log.info(
            "mqtt_connected",
            broker=self.broker,
            protocol=connection.protocol,
            client_id=self._settings.client_id,
            session_present=connack.session_present,
            subscriptions=len(self._wanted),
        )
        if self._probe_pending and connection.protocol == MQTT_3_1_1:
            self._probe_pending = False
            self._probe = asyncio.create_task(
                self._fall_forward(connection), name=f"mqtt-probe {self.broker}"
            )
        return connection

    async def _fall_forward(self, connection: MqttConnection) -> None:
        """The broker was remembered as 3.1.1-only: if it speaks MQTT 5 now, switch to it."""
        settings = self._settings
        try:
            ssl_context = self._ssl_context() if settings.use_tls else None
        except OSError:
            return  # the main connection reports an unusable CA file
        if not await speaks_mqtt5(settings, ssl_context, timeout_s=self._connect_timeout_s):
            log.debug("mqtt_protocol_probe", broker=self.broker, mqtt5=False)
            return
        log.info(
            "mqtt_protocol_upgrade",
            broker=self.broker,
            from_protocol=MQTT_3_1_1,
            to_protocol=MQTT_5,
        )
        if self._memory is not None:
            self._memory.remember(self.broker, MQTT_5)
        self._protocol = MQTT_5
        self._protocol_accepted = None  # MQTT 5 may fall back again if it fails after all
        if connection.is_open and not self._closing:
            self._retry_now = True  # reconnect at once, in MQTT 5
            connection.fail("the broker speaks MQTT 5 now: reconnecting in MQTT 5")

    def _connect_failed(self, connection: MqttConnection | None, reason: str) -> None:
        if connection is not None:
            connection.fail(reason)
        self._last_error = f"cannot connect to the MQTT broker at {self.broker}: {reason}"
        log.warning("mqtt_connection_failed", broker=self.broker, reason=reason)

    def _set_disconnected(self) -> None:
        self._connected = False
        self._connected_event.clear()

    def _ssl_context(self) -> ssl.SSLContext:
        settings = self._settings
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect_packet(self) -> mqtt5.ConnectPacket:
        settings = self._settings
        will = None
        if settings.will is not None:
            will = mqtt5.Will(
                settings.will.topic,
                payload=settings.will.payload,
                qos=(mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE, mqtt5.QoS.EXACTLY_ONCE)[
                    settings.will.qos
                ],
                retain=settings.will.retain,
            )
        return mqtt5.ConnectPacket(
            settings.client_id,
            username=settings.username or None,
            password=settings.password.encode("utf-8") if settings.password else None,
            clean_start=settings.clean_start,
            will=will,
            keep_alive=settings.keepalive_s,
            session_expiry_interval=settings.session_expiry_s,
            receive_max=settings.receive_maximum,
        )

    async def _keepalive(self, connection: MqttConnection) -> None:
        keepalive_s = self._settings.keepalive_s
        if keepalive_s <= 0:
            return
        connack = connection.connack.result()
        if connack.server_keep_alive:
            keepalive_s = connack.server_keep_alive
        while connection.is_open:
            await asyncio.sleep(keepalive_s / 2)
            idle_s = connection.idle_s()
            if idle_s > keepalive_s * 1.5:
                connection.fail(
                    f"no packet from the broker for {idle_s:.0f} s (keep-alive {keepalive_s} s)"
                )
                return
            connection.ping()

    # --- subscriptions ------------------------------------------------------

    async def set_subscriptions(self, filters: Iterable[str]) -> None:
        """Make ``filters`` the wanted set: subscribe the added, unsubscribe the removed.

        Works while disconnected (applied on the next connect). Invalid filters
        raise ``ConfigError`` and change nothing. A filter the broker refuses is
        logged (``mqtt_subscribe_refused``) and tried again on the next connect.
        """
        wanted = _validated_filters(filters)
        async with self._subscription_lock:
            added = wanted - self._wanted
            removed = self._wanted - wanted
            self._wanted = wanted
            connection = self._connection if self._connected else None
            if connection is None or not (added or removed):
                return
            try:
                await self._apply_subscriptions(
                    connection, subscribe=sorted(added), unsubscribe=sorted(removed)
                )
            except MqttError as err:
                # No (good) SUBACK: drop the connection so that the next connect
                # subscribes the whole wanted set, rather than stay up half-deaf.
                log.warning(
                    "mqtt_subscription_change_deferred", broker=self.broker, reason=str(err)
                )
                if connection.is_open:
                    connection.fail(f"subscription change failed: {err}")

    async def _apply_subscriptions(
        self, connection: MqttConnection, *, subscribe: list[str], unsubscribe: list[str]
    ) -> None:
        # In batches: one SUBSCRIBE of 20,000 filters (10,000 devices) is about 1 MB,
        # more than many brokers take in one packet (EMQX's default limit is 1 MB).
        # All batches go out at once; then their SUBACKs are awaited.
        pending = []
        for start in range(0, len(subscribe), SUBSCRIBE_BATCH):
            batch = subscribe[start : start + SUBSCRIBE_BATCH]
            packet_id, reply = connection.new_request()
            connection.send(
                mqtt5.SubscribePacket(packet_id, [_subscription_filter(f) for f in batch])
            )
            pending.append((batch, packet_id, reply))
        for batch, packet_id, reply in pending:
            suback = await self._await_reply(connection, packet_id, reply, "SUBACK")
            assert isinstance(suback, mqtt5.SubAckPacket)
            for pattern, code in zip(batch, suback.reason_codes, strict=False):
                if reason_value(code) >= _FAILURE:
                    log.warning(
                        "mqtt_subscribe_refused",
                        broker=self.broker,
                        topic_filter=pattern,
                        reason=describe_reason(code),
                    )
                else:
                    self._session_filters.add(pattern)
        requests = []
        for start in range(0, len(unsubscribe), SUBSCRIBE_BATCH):
            batch = unsubscribe[start : start + SUBSCRIBE_BATCH]
            packet_id, reply = connection.new_request()
            connection.send(mqtt5.UnsubscribePacket(packet_id, batch))
            requests.append((batch, packet_id, reply))
        for batch, packet_id, reply in requests:
            await self._await_reply(connection, packet_id, reply, "UNSUBACK")
            self._session_filters.difference_update(batch)
        if len(subscribe) > SUBSCRIBE_BATCH:
            # Grown one add at a time, a set's table ends up to twice the size a copy needs.
            self._session_filters = set(self._session_filters)

    async def _await_reply(
        self,
        connection: MqttConnection,
        packet_id: int,
        reply: asyncio.Future[mqtt5.Packet],
        what: str,
    ) -> mqtt5.Packet:
        try:
            async with asyncio.timeout(self._request_timeout_s):
                return await reply
        except TimeoutError:
            connection.forget_request(packet_id)
            raise MqttError(
                f"no {what} from the MQTT broker at {self.broker} "
                f"within {self._request_timeout_s:g} s"
            ) from None

    # --- messages in ----------------------------------------------------------

    async def receive_batch(self, max_messages: int = 1000) -> list[InboundMessage]:
        """Wait for at least one message and return up to ``max_messages`` at once.

        Never waits for more once one is there. Returns ``[]`` only when the
        client is closed and nothing is left.
        """
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        return await self._queue.get_batch(max_messages)

    def ack(self, messages: Iterable[SourceMessage]) -> int:
        """Send PUBACK for these QoS 1 messages, all in one write; returns how many.

        Call it only after their effects are committed. Messages of an older
        connection are skipped (the broker redelivers them), as are QoS 0
        messages and messages already acknowledged.
        """
        connection = self._connection
        if connection is None:
            return 0
        generation = connection.generation
        return connection.send_pubacks(
            token[1]
            for token in (message.ack_token for message in messages)
            if token is not None and token[0] == generation
        )

    # --- messages out ---------------------------------------------------------

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> None:
        """Publish one message; with ``qos=1`` wait for the broker's PUBACK.

        Raises ``MqttError`` when not connected, on a bad topic or QoS, when the
        broker refuses the message, or when no PUBACK comes in time.
        """
        problem = topic_name_problem(topic)
        if problem:
            raise MqttError(f"cannot publish: {problem}")
        if qos not in (0, 1) or isinstance(qos, bool):
            raise MqttError(f"cannot publish with qos {qos!r}: only 0 and 1 are supported")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise MqttError(f"cannot publish: payload must be bytes, got {type(payload).__name__}")
        connection = self._connection if self._connected else None
        if connection is None or not connection.is_open:
            raise MqttError(f"cannot publish: not connected to the MQTT broker at {self.broker}")
        if qos == 0:
            connection.send(mqtt5.PublishPacket(topic, bytes(payload), retain=retain))
            return
        async with connection.send_quota:
            packet_id, reply = connection.new_request()
            connection.send(
                mqtt5.PublishPacket(
                    topic,
                    bytes(payload),
                    qos=mqtt5.QoS.AT_LEAST_ONCE,
                    retain=retain,
                    packet_id=packet_id,
                )
            )
            puback = await self._await_reply(connection, packet_id, reply, "PUBACK")
        assert isinstance(puback, mqtt5.PubAckPacket)
        code = reason_value(puback.reason_code)
        if code >= _FAILURE:
            raise MqttError(
                f"the MQTT broker refused the message on {topic!r}: "
                f"{describe_reason(puback.reason_code)} (reason {code})"
            )

    # --- lifecycle ------------------------------------------------------------

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected and subscribed; False if that takes longer than ``timeout_s``."""
        if self._connected:
            return True
        if self._closing:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected_event.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Disconnect normally (reason 0: the broker drops our will) and stop ``run()``.

        Does not unsubscribe: the persistent session keeps collecting messages
        for the next start. Safe to call more than once.
        """
        if not self._closing:
            self._closing = True
            self._closing_event.set()
            if self._probe is not None:
                self._probe.cancel()
            connection = self._connection
            if connection is not None and connection.is_open:
                connection.write(mqtt5.DisconnectPacket().write())
                connection.close("closed by the bridge")
            if self._attempt is not None and not self._attempt.done() and not self._connected:
                self._attempt.cancel()  # still connecting: do not wait for the timeout
            self._queue.close()
        if self._run_started:
            await self._stopped_event.wait()


def _os_reason(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the broker running, is the port right?)"
    return err.strerror or str(err) or type(err).__name__


def _ssl_reason(err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return f"certificate verify failed: {err.verify_message}"
    return str(err.reason or err)
