# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from . import mqtt_bridge
from . import mqtt_broker
from . import mqtt_device
from . import mqtt_session
from . import mqtt_event
from . import res_config_settings
