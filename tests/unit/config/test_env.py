"""Settings from environment variables: names, defaults, and errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_bridge.config.env import EnvSettings, settings_from_env
from iot_bridge.config.model import MqttSection, OdooSection
from iot_bridge.config.shard import Shard
from iot_bridge.errors import ConfigError


def errors_of(env: dict[str, str]) -> dict[str, str]:
    """The issues settings_from_env reports, as variable -> message."""
    with pytest.raises(ConfigError) as caught:
        settings_from_env(env)
    assert caught.value.source == "environment"
    return {issue.path: issue.message for issue in caught.value.issues}


def test_empty_environment_gives_the_defaults() -> None:
    """No variables: localhost:1883, no Odoo, 0.0.0.0:8080, ./data, INFO, json."""
    settings = settings_from_env({})
    assert settings == EnvSettings()
    assert settings.mqtt == MqttSection()
    assert settings.odoo is None
    assert (settings.bridge_host, settings.bridge_port) == ("0.0.0.0", 8080)
    assert settings.api_token is None
    assert settings.data_dir == Path("./data")
    assert (settings.log_level, settings.log_format, settings.log_file) == ("INFO", "json", None)


def test_every_contract_variable_is_read() -> None:
    """Each variable of CONTRACT section 2 lands in its field."""
    settings = settings_from_env(
        {
            "MQTT_BROKER": "mosquitto",
            "MQTT_PORT": "8883",
            "MQTT_USERNAME": "bridge",
            "MQTT_PASSWORD": " s3cret ",
            "MQTT_CLIENT_ID": "bridge-1",
            "MQTT_USE_TLS": "true",
            "BRIDGE_PORT": "9090",
            "BRIDGE_HOST": "127.0.0.1",
            "BRIDGE_API_TOKEN": "tok",
            "BRIDGE_DATA_DIR": "/data",
            "ODOO_BASE_URL": "http://odoo-dev:8069/",
            "ODOO_DATABASE": "odoo",
            "ODOO_USERNAME": "admin@example.com",
            "ODOO_API_KEY": "key",
            "LOG_LEVEL": "debug",
            "LOG_FORMAT": "TEXT",
            "LOG_FILE": "/var/log/bridge.log",
        }
    )
    assert settings.mqtt == MqttSection(
        broker="mosquitto",
        port=8883,
        username="bridge",
        password=" s3cret ",
        client_id="bridge-1",
        use_tls=True,
    )
    assert settings.odoo == OdooSection(
        base_url="http://odoo-dev:8069",
        database="odoo",
        username="admin@example.com",
        api_key="key",
    )
    assert (settings.bridge_host, settings.bridge_port) == ("127.0.0.1", 9090)
    assert settings.api_token == "tok"
    assert settings.data_dir == Path("/data")
    assert (settings.log_level, settings.log_format) == ("DEBUG", "text")
    assert settings.log_file == "/var/log/bridge.log"


def test_empty_variables_count_as_unset() -> None:
    """MQTT_USERNAME= and friends (as compose files write them) keep the defaults."""
    settings = settings_from_env(
        dict.fromkeys(
            (
                "MQTT_BROKER",
                "MQTT_PORT",
                "MQTT_USE_TLS",
                "ODOO_BASE_URL",
                "BRIDGE_API_TOKEN",
                "BRIDGE_PORT",
                "LOG_LEVEL",
                "LOG_FILE",
            ),
            "",
        )
    )
    assert settings == EnvSettings()


def test_odoo_needs_a_base_url() -> None:
    """ODOO_* without ODOO_BASE_URL means no Odoo (events kept locally)."""
    assert settings_from_env({"ODOO_DATABASE": "odoo", "ODOO_API_KEY": "k"}).odoo is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MQTT_PORT", "abc", "must be a whole number (got 'abc')"),
        ("MQTT_PORT", "0", "must be between 1 and 65535 (got '0')"),
        ("MQTT_PORT", "70000", "must be between 1 and 65535 (got '70000')"),
        ("BRIDGE_PORT", "80a", "must be a whole number (got '80a')"),
        ("MQTT_USE_TLS", "maybe", "must be true or false (or 1/0, yes/no, on/off) (got 'maybe')"),
        ("LOG_LEVEL", "LOUD", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (got 'LOUD')"),
        ("LOG_FORMAT", "xml", "must be one of json, text (got 'xml')"),
        (
            "MQTT_CLIENT_ID",
            "a b",
            "must be 1 to 64 characters, each a letter, a digit, '_', '.', ':' or '-'",
        ),
        (
            "MQTT_BROKER",
            "mqtt://host",
            "must be a host name or IP address without a scheme (use use_tls for TLS)",
        ),
        (
            "ODOO_BASE_URL",
            "odoo:8069",
            "must be an http:// or https:// URL with a host (like http://odoo:8069)",
        ),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str, message: str) -> None:
    """Each invalid variable is an error at its own name with a plain sentence."""
    assert errors_of({name: value}) == {name: message}


def test_every_invalid_variable_is_listed() -> None:
    """Several bad variables are reported together."""
    found = errors_of({"MQTT_PORT": "x", "BRIDGE_PORT": "y", "LOG_FORMAT": "z"})
    assert set(found) == {"MQTT_PORT", "BRIDGE_PORT", "LOG_FORMAT"}


@pytest.mark.parametrize("flag", ["1", "TRUE", "yes", "On"])
def test_true_spellings(flag: str) -> None:
    """MQTT_USE_TLS accepts true/1/yes/on in any case."""
    assert settings_from_env({"MQTT_USE_TLS": flag}).mqtt.use_tls is True


def test_warn_is_warning() -> None:
    """LOG_LEVEL=warn is the standard WARNING level."""
    assert settings_from_env({"LOG_LEVEL": "warn"}).log_level == "WARNING"


def test_secrets_stay_out_of_errors_and_repr() -> None:
    """Neither an error about a secret nor repr() shows its value."""
    found = errors_of({"MQTT_PASSWORD": "p" * 2000})
    assert found == {"MQTT_PASSWORD": "must be at most 1024 characters"}
    settings = settings_from_env(
        {
            "MQTT_PASSWORD": "hunter2",
            "ODOO_BASE_URL": "http://o",
            "ODOO_API_KEY": "k-123",
            "BRIDGE_API_TOKEN": "tok-456",
        }
    )
    text = repr(settings)
    for secret in ("hunter2", "k-123", "tok-456"):
        assert secret not in text
    assert "api_token='***'" in text


def test_bridge_shard_is_read_and_unset_means_all_devices() -> None:
    """BRIDGE_SHARD=2/3 gives Shard(2, 3); unset or empty gives None (every device)."""
    assert settings_from_env({"BRIDGE_SHARD": "2/3"}).shard == Shard(2, 3)
    assert settings_from_env({}).shard is None
    assert settings_from_env({"BRIDGE_SHARD": " "}).shard is None
    assert "shard=Shard(index=2, count=3)" in repr(settings_from_env({"BRIDGE_SHARD": "2/3"}))


@pytest.mark.parametrize("value", ["0/3", "4/3", "x", "1/0", "3"])
def test_invalid_bridge_shard_is_an_error_naming_the_variable(value: str) -> None:
    """An invalid BRIDGE_SHARD is reported by name with the value, among the other errors."""
    errors = errors_of({"BRIDGE_SHARD": value, "MQTT_PORT": "abc"})
    assert set(errors) == {"BRIDGE_SHARD", "MQTT_PORT"}
    assert f"(got {value!r})" in errors["BRIDGE_SHARD"]


def test_bridge_max_connections_is_read_and_unset_means_the_default() -> None:
    """BRIDGE_MAX_CONNECTIONS=100 gives 100; unset gives None (the documented default)."""
    assert settings_from_env({"BRIDGE_MAX_CONNECTIONS": "100"}).max_connections == 100
    assert settings_from_env({}).max_connections is None
    assert "max_connections=100" in repr(settings_from_env({"BRIDGE_MAX_CONNECTIONS": "100"}))


@pytest.mark.parametrize("value", ["0", "-1", "100001", "many", "1.5"])
def test_invalid_bridge_max_connections_is_an_error_naming_the_variable(value: str) -> None:
    """Out of 1-100,000 or not a whole number: an error naming the variable and the value."""
    errors = errors_of({"BRIDGE_MAX_CONNECTIONS": value})
    assert set(errors) == {"BRIDGE_MAX_CONNECTIONS"}
    assert f"(got {value!r})" in errors["BRIDGE_MAX_CONNECTIONS"]
