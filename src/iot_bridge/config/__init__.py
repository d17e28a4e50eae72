"""The config document and its sources (CONTRACT section 2).

``model`` validates a document once, at load or push time; ``sources``
decides which document is active (persisted > ``--config`` > environment)
and persists accepted pushes atomically.
"""

from __future__ import annotations

from iot_bridge.config.env import EnvSettings, settings_from_env
from iot_bridge.config.files import load_config_file
from iot_bridge.config.model import (
    DEFAULT_MAX_CONNECTIONS,
    MASK,
    MAX_DEVICES,
    BridgeConfig,
    DeviceConfig,
    HttpSection,
    MqttSection,
    OdooSection,
    ParserOptions,
    SessionConfigModel,
)
from iot_bridge.config.parse import parse_config
from iot_bridge.config.shard import Shard, parse_shard
from iot_bridge.config.sources import (
    ACTIVE_CONFIG_NAME,
    LoadedConfig,
    effective_max_connections,
    effective_mqtt,
    effective_odoo,
    load_active_config,
    persist_config,
    summarize,
)
from iot_bridge.parsers import PARSER_TYPES, ParserType

__all__ = [
    "ACTIVE_CONFIG_NAME",
    "DEFAULT_MAX_CONNECTIONS",
    "MASK",
    "MAX_DEVICES",
    "PARSER_TYPES",
    "BridgeConfig",
    "DeviceConfig",
    "EnvSettings",
    "HttpSection",
    "LoadedConfig",
    "MqttSection",
    "OdooSection",
    "ParserOptions",
    "ParserType",
    "SessionConfigModel",
    "Shard",
    "effective_max_connections",
    "effective_mqtt",
    "effective_odoo",
    "load_active_config",
    "load_config_file",
    "parse_config",
    "parse_shard",
    "persist_config",
    "settings_from_env",
    "summarize",
]
