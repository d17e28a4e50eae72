"""iot-bridge: smart-plug power readings in, machine-usage sessions out to Odoo."""

from iot_bridge.domain.events import Event, EventType
from iot_bridge.domain.readings import Reading
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.errors import (
    BridgeError,
    ConfigError,
    DeliveryError,
    MqttError,
    PayloadError,
    StoreError,
)

__all__ = [
    "BridgeError",
    "ConfigError",
    "DeliveryError",
    "Event",
    "EventType",
    "MqttError",
    "PayloadError",
    "Reading",
    "SessionConfig",
    "StoreError",
]
__version__ = "0.1.0"
