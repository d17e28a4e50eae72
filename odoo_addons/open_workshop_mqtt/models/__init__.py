# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
# The mixin first: Odoo builds the models in import order, and broker and device inherit it.
from . import mqtt_pushed_mixin

# isort: split
from . import mqtt_bridge, mqtt_broker, mqtt_device, mqtt_event, mqtt_session, res_config_settings
