"""Does a broker speak MQTT 5? Asked on a connection of its own, beside the bridge's.

Used when the data dir remembers a broker as 3.1.1-only: the bridge connects
in 3.1.1 at once, and this asks in the background whether the broker was
upgraded since. It sends an MQTT 5 CONNECT with its own client id
(``<client_id>-probe``), a clean start and no session expiry, so the bridge's
persistent session is never touched, and it reads the first packet back:

- an MQTT 5 CONNACK (remaining length of 3 or more), with any reason but
  "unsupported protocol version": yes (even "not authorized" is MQTT 5 speaking);
- a 3.1.1 CONNACK (remaining length 2), a refusal of the protocol, silence
  until the timeout, a closed or failed connection: no.

An accepted probe is closed with DISCONNECT.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Final

import mqtt5

from iot_bridge.net.mqtt.settings import MqttSettings

_CONNACK: Final = 0x20
_UNSUPPORTED_PROTOCOL: Final = 0x84
_DISCONNECT: Final = b"\xe0\x00"


async def speaks_mqtt5(
    settings: MqttSettings, ssl_context: ssl.SSLContext | None, *, timeout_s: float
) -> bool:
    """True when the broker answers an MQTT 5 CONNECT in MQTT 5 (see the module docstring)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                settings.host,
                settings.port,
                ssl=ssl_context,
                server_hostname=settings.host if ssl_context is not None else None,
            )
            writer.write(
                mqtt5.ConnectPacket(
                    f"{settings.client_id}-probe",
                    username=settings.username or None,
                    password=settings.password.encode("utf-8") if settings.password else None,
                    clean_start=True,
                    keep_alive=settings.keepalive_s,
                ).write()
            )
            await writer.drain()
            kind = (await reader.readexactly(1))[0]
            length = await _remaining_length(reader)
            if kind != _CONNACK or length < 3:
                return False  # not a CONNACK, or a 3.1.1 one
            body = await reader.readexactly(length)
            if body[1] == _UNSUPPORTED_PROTOCOL:
                return False
            if body[1] == 0:
                writer.write(_DISCONNECT)
                await writer.drain()
            return True
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _remaining_length(reader: asyncio.StreamReader) -> int:
    """MQTT's variable-length integer (1 to 4 bytes)."""
    value = 0
    for shift in range(0, 28, 7):
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise ValueError("malformed remaining length")
