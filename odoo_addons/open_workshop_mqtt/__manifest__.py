# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
{
    "name": "Open Workshop MQTT",
    "summary": "Machine usage sessions from smart-plug power meters, through iot-bridge",
    "version": "18.0.1.0.0",
    "category": "Manufacturing/Maintenance",
    "author": "iot-bridge contributors",
    "license": "LGPL-3",
    "application": True,
    "depends": ["base", "web", "mail"],
    "external_dependencies": {"python": ["requests"]},
    "data": [
        "security/open_workshop_mqtt_security.xml",
        "security/ir.model.access.csv",
        "data/ir_config_parameter_data.xml",
        "data/ir_cron_data.xml",
        "views/mqtt_broker_views.xml",
        "views/mqtt_device_views.xml",
        "views/mqtt_session_views.xml",
        "views/mqtt_event_views.xml",
        "views/res_config_settings_views.xml",
        "views/open_workshop_mqtt_menus.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "open_workshop_mqtt/static/tests/tours/*.js",
        ],
    },
    "post_load": "post_load",
}
