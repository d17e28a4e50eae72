"""The durable store (the ``Outbox`` port), split by responsibility around one database.

``database`` (the SQLite file, connections, THE write transaction),
``datadir`` (the data dir and its one-process lock), ``outbox`` (events and
delivery), ``snapshots`` (detector state), ``fingerprints`` (redelivery
marks), and ``event_store`` (``EventStore``: commits all three in one
transaction).
"""

from iot_bridge.adapters.store.database import DB_FILENAME
from iot_bridge.adapters.store.event_store import DEFAULT_RETENTION_S, EventStore
from iot_bridge.service.ports import OutboxStats, StoredEvent

__all__ = ["DB_FILENAME", "DEFAULT_RETENTION_S", "EventStore", "OutboxStats", "StoredEvent"]
