# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from . import controllers, models
from .hooks import post_load
