# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from . import (
    test_access,
    test_batch,
    test_concurrency,
    test_controller,
    test_device_rules,
    test_event_processing,
    test_push,
    test_settings,
    test_tour,
)
