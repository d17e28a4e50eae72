"""The bridge's MQTT 5 client: persistent session, manual QoS 1 acks, reconnect forever.

Brokers that do not speak MQTT 5 get MQTT 3.1.1 instead (see ``MqttClient``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable

import mqtt5

from iot_bridge.backoff import Backoff
from iot_bridge.errors import MqttError
from iot_bridge.logs import get_logger
from iot_bridge.net.mqtt._connection import (
    MQTT_3_1_1,
    READ_COALESCE_S,
    InboundQueue,
    MqttConnection,
    ProtocolVersion,
    describe_reason,
    reason_value,
)
from iot_bridge.net.mqtt._handshake import (
    FAILURE,
    connect_error_reason,
    connect_packet,
    keep_alive,
    publish_problem,
)
from iot_bridge.net.mqtt._handshake import ssl_context as tls_context
from iot_bridge.net.mqtt._negotiation import Negotiation
from iot_bridge.net.mqtt._probe import speaks_mqtt5
from iot_bridge.net.mqtt._subscriptions import apply_subscriptions, await_reply, validated_filters
from iot_bridge.net.mqtt.messages import InboundMessage
from iot_bridge.net.mqtt.protocol_memory import ProtocolMemory
from iot_bridge.net.mqtt.settings import MqttSettings
from iot_bridge.service.ports import SourceMessage

log = get_logger(__name__)

# A connection that lasted this long resets the reconnect backoff; one that
# drops sooner (session takeover, a broker closing on SUBSCRIBE) keeps backing off.
STABLE_S = 30.0


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

    Protocol: MQTT 5 first, MQTT 3.1.1 for a broker that refuses it, remembered per
    broker in ``protocol_memory`` (``_negotiation.py`` says how); ``protocol`` says
    which one is in use.
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
        self._wanted = validated_filters(subscriptions)
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
        self._negotiation = Negotiation(
            settings.broker,
            protocol_memory,
            connect_failed=self._connect_failed,
            set_error=self._set_error,
        )
        self._probe: asyncio.Task[None] | None = None

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
        return self._negotiation.accepted

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
                if self._negotiation.retry_now:
                    self._negotiation.retry_now = False
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
            keep_alive(connection, self._settings.keepalive_s), name=f"mqtt-keepalive {self.broker}"
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
            ssl_context = tls_context(settings) if settings.use_tls else None
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
                        protocol=self._negotiation.protocol,
                    ),
                    settings.host,
                    settings.port,
                    ssl=ssl_context,
                    server_hostname=settings.host if ssl_context is not None else None,
                )
                self._connection = connection
                connection.send(connect_packet(settings))
                connack = await connection.connack
        except TimeoutError:
            reason = f"no answer within {self._connect_timeout_s:g} s"
            # Connected but no CONNACK: some 3.1.1-only brokers misread an MQTT 5
            # CONNECT as an unfinished packet and wait for bytes that never come.
            if connection is not None and self._negotiation.try_other(connection, reason):
                return None
            self._connect_failed(connection, reason)
            return None
        except (OSError, ValueError) as err:  # ValueError: e.g. IDNA, empty label, label over 63
            self._connect_failed(connection, connect_error_reason(err, settings.host))
            return None
        except MqttError as err:
            reason = f"{err} before accepting the connection"
            if self._negotiation.try_other(connection, reason):
                return None
            self._connect_failed(connection, f"{reason} (wrong port, or TLS on one side only?)")
            return None
        if reason_value(connack.reason_code) != 0:
            self._negotiation.refused(connection, connack)
            return None
        return await self._on_connected(connection, connack)

    async def _on_connected(
        self, connection: MqttConnection, connack: mqtt5.ConnAckPacket
    ) -> MqttConnection | None:
        self._connected_at = time.monotonic()
        self._negotiation.connected(connection.protocol)
        if connack.session_present:
            dropped = self._queue.drop_stale_qos1(connection.generation)
            if dropped:
                log.info("mqtt_stale_messages_dropped", count=dropped, reason="broker redelivers")
        else:
            self._session_filters.clear()
        try:
            async with self._subscription_lock:
                self._session_filters = await apply_subscriptions(
                    connection,
                    self._session_filters,
                    subscribe=sorted(self._wanted),
                    unsubscribe=sorted(self._session_filters - self._wanted),
                    timeout_s=self._request_timeout_s,
                    broker=self.broker,
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
        if self._negotiation.probe_pending and connection.protocol == MQTT_3_1_1:
            self._negotiation.probe_pending = False
            self._probe = asyncio.create_task(
                self._fall_forward(connection), name=f"mqtt-probe {self.broker}"
            )
        return connection

    async def _fall_forward(self, connection: MqttConnection) -> None:
        """The broker was remembered as 3.1.1-only: if it speaks MQTT 5 now, switch to it."""
        settings = self._settings
        try:
            ssl_context = tls_context(settings) if settings.use_tls else None
        except OSError:
            return  # the main connection reports an unusable CA file
        if not await speaks_mqtt5(settings, ssl_context, timeout_s=self._connect_timeout_s):
            log.debug("mqtt_protocol_probe", broker=self.broker, mqtt5=False)
            return
        self._negotiation.upgraded()
        if connection.is_open and not self._closing:
            self._negotiation.retry_now = True  # reconnect at once, in MQTT 5
            connection.fail("the broker speaks MQTT 5 now: reconnecting in MQTT 5")

    def _connect_failed(self, connection: MqttConnection | None, reason: str) -> None:
        if connection is not None:
            connection.fail(reason)
        self._last_error = f"cannot connect to the MQTT broker at {self.broker}: {reason}"
        log.warning("mqtt_connection_failed", broker=self.broker, reason=reason)

    def _set_error(self, text: str) -> None:
        self._last_error = text

    def _set_disconnected(self) -> None:
        self._connected = False
        self._connected_event.clear()

    # --- subscriptions ------------------------------------------------------

    async def set_subscriptions(self, filters: Iterable[str]) -> None:
        """Make ``filters`` the wanted set: subscribe the added, unsubscribe the removed.

        Works while disconnected (applied on the next connect). Invalid filters
        raise ``ConfigError`` and change nothing. A filter the broker refuses is
        logged (``mqtt_subscribe_refused``) and tried again on the next connect.
        """
        wanted = validated_filters(filters)
        async with self._subscription_lock:
            added = wanted - self._wanted
            removed = self._wanted - wanted
            self._wanted = wanted
            connection = self._connection if self._connected else None
            if connection is None or not (added or removed):
                return
            try:
                self._session_filters = await apply_subscriptions(
                    connection,
                    self._session_filters,
                    subscribe=sorted(added),
                    unsubscribe=sorted(removed),
                    timeout_s=self._request_timeout_s,
                    broker=self.broker,
                )
            except MqttError as err:
                # No (good) SUBACK: drop the connection so that the next connect
                # subscribes the whole wanted set, rather than stay up half-deaf.
                log.warning(
                    "mqtt_subscription_change_deferred", broker=self.broker, reason=str(err)
                )
                if connection.is_open:
                    connection.fail(f"subscription change failed: {err}")

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
        problem = publish_problem(topic, payload, qos)
        if problem:
            raise MqttError(problem)
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
            puback = await await_reply(
                connection,
                packet_id,
                reply,
                "PUBACK",
                timeout_s=self._request_timeout_s,
                broker=self.broker,
            )
        assert isinstance(puback, mqtt5.PubAckPacket)
        code = reason_value(puback.reason_code)
        if code >= FAILURE:
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
