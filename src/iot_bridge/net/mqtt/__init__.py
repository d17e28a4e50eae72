"""MQTT in: the bridge's own asyncio MQTT 5 client on the ``mqtt5`` sans-IO codec.

Persistent session (stable client id, ``clean_start`` false), QoS 1
subscriptions renewed on every connect, manual acknowledgements (a QoS 1
message is acknowledged only when ``MqttClient.ack`` is called, after the
commit that holds its effects), and reconnection with randomised, capped
exponential backoff.
"""

from iot_bridge.backoff import Backoff
from iot_bridge.errors import MqttError
from iot_bridge.net.mqtt.client import MqttClient
from iot_bridge.net.mqtt.messages import InboundMessage
from iot_bridge.net.mqtt.settings import MqttSettings, WillMessage
from iot_bridge.topics import topic_filter_problem, topic_matches, topic_name_problem

__all__ = [
    "Backoff",
    "InboundMessage",
    "MqttClient",
    "MqttError",
    "MqttSettings",
    "WillMessage",
    "topic_filter_problem",
    "topic_matches",
    "topic_name_problem",
]
