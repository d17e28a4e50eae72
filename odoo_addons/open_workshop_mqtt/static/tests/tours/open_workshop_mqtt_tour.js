/** @odoo-module **/
// License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import {registry} from "@web/core/registry";

// A manager creates a machine in the Machines kanban and pushes the config to the bridge.
registry.category("web_tour.tours").add("open_workshop_mqtt_create_machine", {
    url: "/odoo/action-open_workshop_mqtt.action_mqtt_device",
    steps: () => [
        {
            content: "Create a machine",
            trigger: ".o_control_panel_main_buttons button.o-kanban-button-new",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_field_widget[name=name] input",
            run: "edit Tour Lathe",
        },
        {
            content: "Its meter's device id",
            trigger: ".o_field_widget[name=device_id] input",
            run: "edit tour-lathe",
        },
        {
            content: "Its meter's topic",
            trigger: ".o_field_widget[name=mqtt_topic] input",
            run: "edit shellyplus1pm-tour/status/switch:0",
        },
        {
            content: "Save",
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            content: "Saved",
            trigger: ".o_form_saved",
        },
        {
            content: "Back to the machines",
            trigger: ".o_breadcrumb .o_back_button a, .o_breadcrumb li.breadcrumb-item a",
            run: "click",
        },
        {
            content: "Switch to the list",
            trigger: ".o_switch_view.o_list",
            run: "click",
        },
        {
            content: "The machine is listed",
            trigger: ".o_list_view .o_data_cell:contains(Tour Lathe)",
        },
        {
            content: "Push the config to the bridge",
            trigger: ".o_list_button_add ~ button[name=action_push_config], button[name=action_push_config]",
            run: "click",
        },
        {
            content: "The bridge configured the machine",
            trigger: ".o_notification:contains(devices configured on the bridge)",
        },
    ],
});

// A manager opens Settings > IoT Bridge and presses Connect.
registry.category("web_tour.tours").add("open_workshop_mqtt_connect", {
    url: "/odoo/action-open_workshop_mqtt.action_iot_bridge_settings",
    steps: () => [
        {
            content: "The bridge URL is set",
            trigger: ".o_field_widget[name=iot_bridge_url] input:value(http://127.0.0.1)",
        },
        {
            content: "Connect",
            trigger: "button[name=action_bridge_connect]",
            run: "click",
        },
        {
            content: "The bridge took the config and reports its MQTT connection",
            trigger: ".o_notification:contains(devices configured on the bridge):contains(MQTT connected)",
        },
    ],
});
