"""The data dir's limits: BRIDGE_RETENTION_DAYS, BRIDGE_DISK_BUDGET_MB, the ``store`` section."""

from __future__ import annotations

import pytest

from iot_bridge.config.env import settings_from_env
from iot_bridge.config.parse import parse_config
from iot_bridge.config.sources import StoreLimits, effective_store
from iot_bridge.errors import ConfigError


def test_the_defaults_are_30_days_and_no_budget() -> None:
    """Nothing set anywhere: delivered events kept 30 days, no disk budget."""
    limits = effective_store(parse_config({}), settings_from_env({}))
    assert limits == StoreLimits(retention_days=30.0, disk_budget_mb=None)
    assert limits.retention_s == 30 * 86400.0
    assert limits.budget_bytes is None


def test_the_environment_sets_both() -> None:
    """BRIDGE_RETENTION_DAYS takes decimals, BRIDGE_DISK_BUDGET_MB whole MB (1024 * 1024 bytes)."""
    env = settings_from_env({"BRIDGE_RETENTION_DAYS": "7.5", "BRIDGE_DISK_BUDGET_MB": "512"})
    limits = effective_store(parse_config({}), env)
    assert limits.retention_days == 7.5
    assert limits.budget_bytes == 512 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BRIDGE_RETENTION_DAYS", "0", "must be more than 0 and at most 3650"),
        ("BRIDGE_RETENTION_DAYS", "-1", "must be more than 0"),
        ("BRIDGE_RETENTION_DAYS", "nan", "must be more than 0"),
        ("BRIDGE_RETENTION_DAYS", "a month", "must be a number"),
        ("BRIDGE_RETENTION_DAYS", "4000", "at most 3650"),
        ("BRIDGE_DISK_BUDGET_MB", "8", "must be between 16 and 10000000"),
        ("BRIDGE_DISK_BUDGET_MB", "1.5", "must be a whole number"),
        ("BRIDGE_DISK_BUDGET_MB", "2G", "must be a whole number"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, message: str) -> None:
    """A bad value stops the start with the variable's name and what it must be."""
    with pytest.raises(ConfigError) as caught:
        settings_from_env({name: value})
    (issue,) = caught.value.issues
    assert issue.path == name
    assert message in issue.message


def test_a_key_of_the_store_section_wins_over_the_environment_key_by_key() -> None:
    """The document's store keys win; a key left out (or null) falls back to the environment."""
    env = settings_from_env({"BRIDGE_RETENTION_DAYS": "7", "BRIDGE_DISK_BUDGET_MB": "100"})
    only_retention = parse_config({"store": {"retention_days": 2}})
    assert effective_store(only_retention, env) == StoreLimits(2.0, 100)
    only_budget = parse_config({"store": {"disk_budget_mb": 64, "retention_days": None}})
    assert effective_store(only_budget, env) == StoreLimits(7.0, 64)
    assert effective_store(parse_config({"store": {}}), env) == StoreLimits(7.0, 100)


@pytest.mark.parametrize(
    ("store", "path"),
    [
        ({"retention_days": 0}, "store.retention_days"),
        ({"retention_days": "30"}, "store.retention_days"),
        ({"retention_days": 5000}, "store.retention_days"),
        ({"disk_budget_mb": 15}, "store.disk_budget_mb"),
        ({"disk_budget_mb": 64.5}, "store.disk_budget_mb"),
        ({"retention": 30}, "store.retention"),
    ],
)
def test_a_bad_store_section_is_rejected_with_its_path(store: dict[str, object], path: str) -> None:
    """Out of range, the wrong type, or an unknown key (a typo): an error naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"store": store})
    assert [issue.path for issue in caught.value.issues] == [path]
