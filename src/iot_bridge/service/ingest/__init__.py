"""The write path: MQTT messages in -> route, parse, detect -> one commit -> acknowledge."""

from iot_bridge.service.ingest.ingestor import DeviceSpec, Ingestor, device_specs

__all__ = ["DeviceSpec", "Ingestor", "device_specs"]
