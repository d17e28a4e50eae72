"""What the client puts on the wire and how its failures read: the CONNECT packet, TLS,
a PUBLISH's arguments checked, a connect's failure as a sentence, the keep-alive."""

from __future__ import annotations

import asyncio
import socket
import ssl

import mqtt5

from iot_bridge.net.mqtt._connection import MqttConnection, describe_reason, reason_value
from iot_bridge.net.mqtt.settings import MqttSettings
from iot_bridge.topics import topic_name_problem

CONNACK_BAD_CREDENTIALS = 134
CONNACK_NOT_AUTHORIZED = 135
CONNACK_UNSUPPORTED_PROTOCOL = 132  # also what a 3.1.1 CONNACK's return code 1 becomes
FAILURE = 0x80  # reason codes from 0x80 on are failures (MQTT 5 section 2.4)


def ssl_context(settings: MqttSettings) -> ssl.SSLContext:
    """The TLS context of ``settings`` (its CA file; no checks with ``tls_insecure``)."""
    context = ssl.create_default_context(cafile=settings.ca_file)
    if settings.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect_packet(settings: MqttSettings) -> mqtt5.ConnectPacket:
    """The CONNECT of ``settings``: client id, credentials, will, session, receive maximum."""
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


def refusal_reason(connack: mqtt5.ConnAckPacket) -> str:
    """Why the broker refused a connect, for the log and ``last_error``."""
    code = reason_value(connack.reason_code)
    detail = f" ({connack.reason_str})" if connack.reason_str else ""
    if code == CONNACK_BAD_CREDENTIALS:
        reason = "the broker rejected the username or password"
    elif code == CONNACK_NOT_AUTHORIZED:
        reason = "the broker says not authorized (check the username and password)"
    else:
        reason = f"the broker refused the connection: {describe_reason(connack.reason_code)}"
    return f"{reason} (CONNACK reason {code}){detail}"


def os_reason(err: OSError) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the broker running, is the port right?)"
    return err.strerror or str(err) or type(err).__name__


def ssl_reason(err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return f"certificate verify failed: {err.verify_message}"
    return str(err.reason or err)


def connect_error_reason(err: OSError | ValueError, host: str) -> str:
    """A failed connect's socket, DNS, TLS or host name error as a sentence."""
    if isinstance(err, ssl.SSLError):
        return f"TLS failed: {ssl_reason(err)}"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve the host name: {err.strerror}"
    if isinstance(err, ValueError):  # UnicodeError too (IDNA)
        return f"invalid host name {host!r}: {err}"
    return os_reason(err)


def publish_problem(topic: str, payload: object, qos: object) -> str | None:
    """Why these arguments cannot be published, or None."""
    problem = topic_name_problem(topic)
    if problem:
        return f"cannot publish: {problem}"
    if qos not in (0, 1) or isinstance(qos, bool):
        return f"cannot publish with qos {qos!r}: only 0 and 1 are supported"
    if not isinstance(payload, bytes | bytearray | memoryview):
        return f"cannot publish: payload must be bytes, got {type(payload).__name__}"
    return None


async def keep_alive(connection: MqttConnection, keepalive_s: int) -> None:
    """PINGREQ at half the keep-alive (the broker's, if it set one); a broker silent for
    1.5 times it fails the connection."""
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
