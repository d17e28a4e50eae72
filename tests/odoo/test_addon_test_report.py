"""How scripts/odoo-test reads the log of Odoo's test runner (no Odoo needed)."""

from __future__ import annotations

from tests.odoo.kit import addon_test_report

HEAD = "2026-12-07 05:43:32,683 25838"
GREEN = f"""{HEAD} INFO owe_t_1 odoo.modules.loading: loading 42 modules...
{HEAD} INFO owe_t_1 odoo.addons.open_workshop_mqtt.tests.test_push: Starting TestPush.test_x ...
{HEAD} WARNING owe_t_1 odoo.addons.open_workshop_mqtt.models.mqtt_bridge: push failed (expected)
{HEAD} INFO owe_t_1 odoo.tests.stats: open_workshop_mqtt: 61 tests 60.1s 12000 queries
{HEAD} INFO owe_t_1 odoo.tests.result: 0 failed, 0 error(s) of 61 tests when loading database 'owe_t_1'
"""


def test_a_green_run_is_ok() -> None:
    """Exit 0, a summary with tests run and none failed, no ERROR line: green."""
    report = addon_test_report(GREEN, 0)
    assert report.ok
    assert (report.tests_run, report.failed, report.errors) == (61, 0, 0)


def test_a_failed_test_is_not_ok() -> None:
    """A FAIL line and a summary counting it: red, and the line is shown."""
    log = GREEN.replace("0 failed, 0 error(s) of 61", "1 failed, 0 error(s) of 61") + (
        f"{HEAD} ERROR owe_t_1 odoo.addons.open_workshop_mqtt.tests.test_push: FAIL: TestPush.test_x\n"
        "Traceback (most recent call last):\n  AssertionError: 1 != 2\n"
    )
    report = addon_test_report(log, 1)
    assert not report.ok
    assert report.failed == 1
    assert len(report.error_lines) == 1 and "FAIL: TestPush.test_x" in report.error_lines[0]


def test_an_error_logged_outside_a_test_is_not_ok() -> None:
    """An ERROR line with a green summary and exit 0 (a data file, a cron) still fails the run."""
    log = GREEN + f"{HEAD} ERROR owe_t_1 odoo.sql_db: bad query: INSERT INTO mqtt_device ...\n"
    report = addon_test_report(log, 0)
    assert not report.ok
    assert report.error_lines == [
        f"{HEAD} ERROR owe_t_1 odoo.sql_db: bad query: INSERT INTO mqtt_device ..."
    ]


def test_a_critical_line_is_not_ok() -> None:
    """A CRITICAL line (a database that failed to load) fails the run."""
    log = GREEN + f"{HEAD} CRITICAL owe_t_1 odoo.service.server: Failed to initialize database\n"
    assert not addon_test_report(log, 0).ok


def test_no_summary_or_no_test_is_not_ok() -> None:
    """No summary line (Odoo stopped early), or a summary of zero tests (addon not found): red."""
    without_summary = "\n".join(line for line in GREEN.splitlines() if "tests.result" not in line)
    assert not addon_test_report(without_summary, 0).ok
    none_ran = GREEN.replace("of 61 tests", "of 0 tests")
    assert not addon_test_report(none_ran, 0).ok


def test_a_non_zero_exit_is_not_ok() -> None:
    """Odoo's exit code counts even when the log looks green."""
    assert not addon_test_report(GREEN, 1).ok


def test_error_words_inside_messages_are_not_levels() -> None:
    """'ERROR' in a message or a traceback's text is not a log level: only the level field counts."""
    log = GREEN + (
        f"{HEAD} INFO owe_t_1 odoo.addons.x: an event answered ERROR: Skipped, as the contract says\n"
        "ERROR: this line is a traceback's continuation, not a log record\n"
    )
    assert addon_test_report(log, 0).ok
