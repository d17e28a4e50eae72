# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from . import mqtt_bridge, mqtt_broker, mqtt_device, mqtt_event, mqtt_session, res_config_settings
