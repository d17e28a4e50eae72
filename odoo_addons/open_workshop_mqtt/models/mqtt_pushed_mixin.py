# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, models


class MqttPushedMixin(models.AbstractModel):
    """A model the bridge's config is made of: a change of it pushes the config.

    Creating or deleting a record pushes; writing pushes when one of
    ``_push_fields`` changes. The push runs after the commit, once per
    transaction (``mqtt.bridge._schedule_push``).
    """

    _name = "mqtt.pushed.mixin"
    _description = "Pushed to the IoT Bridge"

    # the fields the pushed document carries; set by each model
    _push_fields = frozenset()

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        self.env["mqtt.bridge"]._schedule_push()
        return records

    def write(self, vals):
        result = super().write(vals)
        if self._push_fields & vals.keys():
            self.env["mqtt.bridge"]._schedule_push()
        return result

    def unlink(self):
        result = super().unlink()
        self.env["mqtt.bridge"]._schedule_push()
        return result
