"""Which brokers speak only MQTT 3.1.1, remembered in the data dir across restarts.

Some 3.1.1-only brokers never answer an MQTT 5 CONNECT: each start then waits
the whole connect timeout before falling back. The client writes such a broker
down here once a 3.1.1 connect is accepted, and the next start asks it in
3.1.1 at once (and probes in the background whether it speaks MQTT 5 by now).
MQTT 5 is the default and is not written down: an entry is removed when MQTT
5 is accepted again.

The file is ``<data-dir>/mqtt-protocol.json``, ``{"version": 1, "brokers":
{"host:port": "3.1.1"}}``, written atomically. It is only a shortcut: a file
that cannot be read is reported (``mqtt_protocol_memory_unreadable``) and
ignored, a write that fails is reported and the bridge goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Final, Protocol

from iot_bridge.logs import get_logger
from iot_bridge.net.mqtt._connection import MQTT_3_1_1, ProtocolVersion

log = get_logger(__name__)

FILE_NAME: Final = "mqtt-protocol.json"
_VERSION: Final = 1


class ProtocolMemory(Protocol):
    """Where the client looks up and writes down a broker's protocol."""

    def recall(self, broker: str) -> ProtocolVersion | None:
        """The protocol written down for ``broker`` (``host:port``), or None."""
        ...

    def remember(self, broker: str, protocol: ProtocolVersion) -> None:
        """``protocol`` was accepted by ``broker``."""
        ...


class FileProtocolMemory:
    """``ProtocolMemory`` in ``<data-dir>/mqtt-protocol.json`` (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME

    def _load(self) -> dict[str, ProtocolVersion]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as err:
            log.warning("mqtt_protocol_memory_unreadable", path=str(self.path), error=str(err))
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != _VERSION:
                raise ValueError(f"not a version {_VERSION} document")
            brokers = data.get("brokers")
            if not isinstance(brokers, dict):
                raise ValueError("brokers must be an object")
            return {
                str(broker): MQTT_3_1_1
                for broker, protocol in brokers.items()
                if protocol == MQTT_3_1_1
            }
        except ValueError as err:
            log.warning("mqtt_protocol_memory_unreadable", path=str(self.path), error=str(err))
            return {}

    def recall(self, broker: str) -> ProtocolVersion | None:
        """The protocol written down for ``broker``, or None (MQTT 5, the default)."""
        return self._load().get(broker)

    def remember(self, broker: str, protocol: ProtocolVersion) -> None:
        """Write 3.1.1 down for ``broker``; forget it when MQTT 5 was accepted."""
        brokers = self._load()
        if brokers.get(broker) == (protocol if protocol == MQTT_3_1_1 else None):
            return  # nothing changes: no write
        if protocol == MQTT_3_1_1:
            brokers[broker] = protocol
        else:
            brokers.pop(broker, None)
        try:
            self._write({"version": _VERSION, "brokers": brokers})
        except OSError as err:
            log.warning("mqtt_protocol_memory_not_written", path=str(self.path), error=str(err))
            return
        log.info("mqtt_protocol_remembered", broker=broker, protocol=protocol)

    def _write(self, document: dict[str, object]) -> None:
        directory = self.path.parent
        fd, temp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
