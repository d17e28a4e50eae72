"""Config files, source priority, corrupt persisted files and atomic persist, on real files."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from iot_bridge.config import (
    ACTIVE_CONFIG_NAME,
    BridgeConfig,
    EnvSettings,
    MqttSection,
    OdooSection,
    effective_mqtt,
    effective_odoo,
    load_active_config,
    load_config_file,
    parse_config,
    persist_config,
    summarize,
)
from iot_bridge.config.files import MAX_FILE_BYTES
from iot_bridge.errors import ConfigError, StoreError

REPO_ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 16, 15, 0, tzinfo=UTC)
BAD_NAME = f"{ACTIVE_CONFIG_NAME}.bad-20261127T161500Z"

DOCUMENT: dict[str, Any] = {
    "mqtt": {"broker": "broker.local", "port": 1884, "password": "mqtt-secret"},
    "odoo": {"base_url": "http://odoo:8069", "database": "odoo", "api_key": "odoo-secret"},
    "devices": [
        {
            "device_id": "shelly-pm-workshop",
            "machine_name": "CNC Mill (Workshop)",
            "mqtt_topic": "shellypmminig3-48f6eeb73a1c/status/pm1:0",
            "parser_type": "shelly_pm",
            "session_config": {"standby_threshold_w": 5.0, "working_threshold_w": 50.0},
        },
        {
            "device_id": "tasmota-compressor",
            "machine_name": "Kompressor Fräse",
            "mqtt_topic": "tele/compressor/SENSOR",
            "parser_type": "tasmota",
            "parser_options": {"channel": 1},
        },
    ],
    "timestamp": "2026-02-12T19:40:18Z",
    "version": "1.0",
}
FILE_DOCUMENT: dict[str, Any] = {"devices": [DOCUMENT["devices"][1]]}


def write(path: Path, content: str | bytes) -> Path:
    """Write text or bytes to ``path`` and return it."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def file_error(path: Path) -> ConfigError:
    """The ConfigError load_config_file raises for ``path``."""
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert caught.value.source == str(path)
    return caught.value


# -- load_config_file ---------------------------------------------------


def test_yaml_and_json_files_load_to_the_same_config(tmp_path: Path) -> None:
    """The same document as YAML and as JSON gives equal configs."""
    from_yaml = load_config_file(write(tmp_path / "c.yaml", yaml.safe_dump(DOCUMENT)))
    from_json = load_config_file(write(tmp_path / "c.json", json.dumps(DOCUMENT)))
    assert from_yaml == from_json == parse_config(DOCUMENT)


@pytest.mark.parametrize("name", ["config.conf", "config", "config.YML", "c.txt"])
def test_format_is_found_by_content_without_a_known_extension(tmp_path: Path, name: str) -> None:
    """JSON (leading '{') and YAML both load whatever the file is called."""
    for text in (json.dumps(DOCUMENT, indent=2), yaml.safe_dump(DOCUMENT)):
        assert load_config_file(write(tmp_path / name, text)) == parse_config(DOCUMENT)


def test_yaml_flow_mapping_is_not_mistaken_for_json(tmp_path: Path) -> None:
    """A .yaml file starting with '{' in YAML flow style still loads as YAML."""
    path = write(tmp_path / "c.yaml", "{mqtt: {broker: b, port: 1884}, version: '2'}\n")
    config = load_config_file(path)
    assert config.mqtt == MqttSection(broker="b", port=1884)


def test_broken_json_without_json_extension_reports_the_json_error(tmp_path: Path) -> None:
    """Content that starts like JSON and is neither JSON nor YAML gets the JSON error."""
    [issue] = file_error(write(tmp_path / "c.conf", '{"mqtt": {"port": 1}')).issues
    assert issue.path == "line 1"
    assert issue.message.startswith("invalid JSON:")


def test_persisted_file_is_json_syntax_that_yaml_reads(tmp_path: Path) -> None:
    """config-active.yaml is JSON text (fast to load) and a YAML reader gets the same data."""
    path = persist_config(tmp_path, parse_config(DOCUMENT))
    text = path.read_text(encoding="utf-8")
    assert (
        json.loads(text) == yaml.safe_load(text) == parse_config(DOCUMENT).model_dump(mode="json")
    )


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    """A file saved with a UTF-8 byte order mark (Windows editors) loads."""
    path = write(tmp_path / "c.yaml", b"\xef\xbb\xbf" + yaml.safe_dump(DOCUMENT).encode())
    assert load_config_file(path) == parse_config(DOCUMENT)


def test_unquoted_yaml_timestamp_and_version_stay_text(tmp_path: Path) -> None:
    """timestamp: 2026-02-12T19:40:18Z and version: 1.0 unquoted load as strings."""
    path = write(tmp_path / "c.yaml", "timestamp: 2026-02-12T19:40:18Z\nversion: 1.0\n")
    config = load_config_file(path)
    assert (config.timestamp, config.version) == ("2026-02-12T19:40:18Z", "1.0")


def test_bad_yaml_gives_the_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported with its line and column, not the line's text."""
    path = write(tmp_path / "c.yaml", 'mqtt:\n  broker: x\n   password: "s3cr3t\ndevices: []\n')
    error = file_error(path)
    [issue] = error.issues
    assert issue.path.startswith("line 3, column")
    assert issue.message.startswith("invalid YAML: ")
    assert "s3cr3t" not in str(error)


def test_bad_json_gives_the_line(tmp_path: Path) -> None:
    """A JSON syntax error is reported with its line and column."""
    error = file_error(write(tmp_path / "c.json", '{\n  "devices": [\n    1,,\n  ]\n}\n'))
    [issue] = error.issues
    assert issue.path == "line 3"
    assert issue.message.startswith("invalid JSON: Expecting value (column")


def test_duplicate_yaml_key_is_an_error_at_its_line(tmp_path: Path) -> None:
    """A key written twice in YAML is an error, not a silent 'last one wins'."""
    path = write(tmp_path / "c.yaml", "mqtt:\n  port: 1883\n  broker: a\n  port: 1884\n")
    [issue] = file_error(path).issues
    assert issue.path == "line 4, column 3"
    assert issue.message == "invalid YAML: duplicate key 'port'"


def test_duplicate_json_key_is_an_error(tmp_path: Path) -> None:
    """A key written twice in JSON is an error too."""
    [issue] = file_error(write(tmp_path / "c.json", '{"version": "1", "version": "2"}')).issues
    assert issue.message == "invalid JSON: duplicate key 'version'"


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    """An anchor merged with '<<' and then overridden is not a duplicate."""
    text = (
        "devices:\n"
        "  - &base\n"
        "    device_id: a\n    machine_name: A\n"
        "    mqtt_topic: a/status/pm1:0\n    parser_type: shelly_pm\n"
        "  - <<: *base\n    device_id: b\n"
    )
    config = load_config_file(write(tmp_path / "c.yaml", text))
    assert [d.device_id for d in config.devices] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty (no config document in it)"),
        ("\n# only a comment\n", "is empty (no config document in it)"),
        ("null\n", "is empty (no config document in it)"),
        (b"\xff\xfe\x00garbage\x80", "is not UTF-8 text (invalid byte at offset 0)"),
    ],
)
def test_unusable_content_is_one_clear_error(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    """Empty, comment-only, null and non-UTF-8 files each give one sentence."""
    [issue] = file_error(write(tmp_path / "c.yaml", content)).issues
    assert issue.message == message


def test_missing_file_and_directory_are_named(tmp_path: Path) -> None:
    """A missing path or a directory gives an error naming the path."""
    missing = file_error(tmp_path / "nope.yaml")
    assert str(missing.issues[0]) == "file: does not exist"
    assert str(tmp_path / "nope.yaml") in str(missing)
    assert file_error(tmp_path).issues[0].message == "is a directory, not a file"


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    """A file over 16 MiB is refused before parsing."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    assert file_error(path).issues[0].message == "is larger than 16 MiB"


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """Pathologically nested JSON gives ConfigError, not RecursionError."""
    path = write(tmp_path / "c.json", '{"devices": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert file_error(path).issues


def test_invalid_document_in_a_file_lists_every_path(tmp_path: Path) -> None:
    """Validation problems in a file carry their dotted paths and the file as source."""
    bad = {"mqtt": {"port": 0}, "devices": [{**DOCUMENT["devices"][0], "parser_type": "x"}]}
    error = file_error(write(tmp_path / "c.yaml", yaml.safe_dump(bad)))
    assert [issue.path for issue in error.issues] == ["mqtt.port", "devices.0.parser_type"]
    assert str(error).startswith(f"invalid {tmp_path / 'c.yaml'}: mqtt.port:")


@pytest.mark.parametrize("name", ["config.example.yaml", "demo.yaml"])
def test_samples_are_valid(name: str) -> None:
    """The shipped sample configs pass validation."""
    assert load_config_file(REPO_ROOT / "samples" / name)


def test_demo_sample_has_the_three_demo_devices() -> None:
    """samples/demo.yaml holds cnc-mill, laser-cutter and 3d-printer on demo/<id>/status/pm1:0."""
    config = load_config_file(REPO_ROOT / "samples" / "demo.yaml")
    assert [(d.device_id, d.mqtt_topic, d.parser_type) for d in config.devices] == [
        (name, f"demo/{name}/status/pm1:0", "shelly_pm")
        for name in ("cnc-mill", "laser-cutter", "3d-printer")
    ]
    assert all(d.session_config.stop_debounce_s <= 10 for d in config.devices)


def test_example_sample_uses_every_key() -> None:
    """samples/config.example.yaml shows every key of every section and all parser types."""
    data = yaml.safe_load((REPO_ROOT / "samples" / "config.example.yaml").read_text())
    config = parse_config(data)
    assert set(data) == set(BridgeConfig.model_fields)
    assert set(data["mqtt"]) == set(MqttSection.model_fields)
    assert set(data["odoo"]) == set(OdooSection.model_fields)
    assert {d.parser_type for d in config.devices} == {
        "shelly_pm",
        "shelly_rpc",
        "shelly_gen1",
        "tasmota",
        "zigbee2mqtt",
        "generic_json",
    }
    used_options = {key for d in data["devices"] for key in (d.get("parser_options") or {})}
    assert used_options == {"component", "channel", "power_path", "energy_path", "energy_unit"}
    assert set(data["devices"][0]["session_config"]) == {
        "standby_threshold_w",
        "working_threshold_w",
        "start_debounce_s",
        "stop_debounce_s",
        "message_timeout_s",
        "heartbeat_interval_s",
    }


# -- load_active_config --------------------------------------------------


def test_persisted_beats_file_beats_env(tmp_path: Path) -> None:
    """The persisted file wins over --config, which wins over the environment."""
    data_dir = tmp_path / "data"
    config_file = write(tmp_path / "c.yaml", yaml.safe_dump(FILE_DOCUMENT))
    env = EnvSettings()

    from_env = load_active_config(data_dir=data_dir, config_file=None, env=env)
    assert (from_env.source, from_env.config, from_env.last_update) == ("env", BridgeConfig(), None)

    from_file = load_active_config(data_dir=data_dir, config_file=config_file, env=env)
    assert from_file.source == "file"
    assert from_file.config == parse_config(FILE_DOCUMENT)

    persist_config(data_dir, parse_config(DOCUMENT))
    persisted = load_active_config(data_dir=data_dir, config_file=config_file, env=env)
    assert persisted.source == "persisted"
    assert persisted.config == parse_config(DOCUMENT)
    assert persisted.moved_aside is None
    assert persisted.last_update is not None
    assert datetime.fromisoformat(persisted.last_update).tzinfo is not None


CORRUPT = {
    "bad_yaml": "devices: [\n  {device_id: a,\n",
    "invalid_config": "devices:\n  - device_id: a\n    machine_name: A\n    parser_type: nope\n",
    "binary_garbage": b"\x00\x9f\xff\xfe SQLite format 3\x00\x01",
    "empty": "",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
@pytest.mark.parametrize("with_file", [True, False])
def test_corrupt_persisted_file_is_moved_aside_and_the_next_source_used(
    tmp_path: Path, kind: str, with_file: bool
) -> None:
    """An unusable persisted file goes to .bad-<UTC timestamp>, is logged, and is skipped."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    persisted = write(data_dir / ACTIVE_CONFIG_NAME, CORRUPT[kind])
    config_file = write(tmp_path / "c.yaml", yaml.safe_dump(FILE_DOCUMENT)) if with_file else None

    with capture_logs() as logs:
        loaded = load_active_config(
            data_dir=data_dir, config_file=config_file, env=EnvSettings(), now=NOW
        )

    assert loaded.source == ("file" if with_file else "env")
    assert loaded.config == (parse_config(FILE_DOCUMENT) if with_file else BridgeConfig())
    assert loaded.moved_aside == data_dir / BAD_NAME
    assert not persisted.exists()
    content = CORRUPT[kind]
    expected = content if isinstance(content, bytes) else content.encode()
    assert (data_dir / BAD_NAME).read_bytes() == expected
    [entry] = [e for e in logs if e["event"] == "config_persisted_invalid"]
    assert entry["log_level"] == "error"
    assert entry["path"] == str(persisted)
    assert entry["moved_to"] == str(data_dir / BAD_NAME)
    assert entry["issues"]


def test_second_bad_file_in_the_same_second_gets_its_own_name(tmp_path: Path) -> None:
    """Moving aside never overwrites an earlier .bad file."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for _ in range(2):
        write(data_dir / ACTIVE_CONFIG_NAME, "not: [valid")
        load_active_config(data_dir=data_dir, config_file=None, env=EnvSettings(), now=NOW)
    assert sorted(p.name for p in data_dir.iterdir()) == [BAD_NAME, f"{BAD_NAME}-1"]


def test_naive_now_is_taken_as_utc(tmp_path: Path) -> None:
    """A naive ``now`` names the file as UTC."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write(data_dir / ACTIVE_CONFIG_NAME, "")
    loaded = load_active_config(
        data_dir=data_dir, config_file=None, env=EnvSettings(), now=NOW.replace(tzinfo=None)
    )
    assert loaded.moved_aside == data_dir / BAD_NAME


def test_invalid_config_file_stops_startup_after_moving_persisted_aside(tmp_path: Path) -> None:
    """An invalid --config file raises ConfigError; a corrupt persisted file is still moved."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write(data_dir / ACTIVE_CONFIG_NAME, "\x00")
    config_file = write(tmp_path / "c.yaml", "mqtt: {port: 0}\n")
    with pytest.raises(ConfigError) as caught:
        load_active_config(data_dir=data_dir, config_file=config_file, env=EnvSettings(), now=NOW)
    assert caught.value.source == str(config_file)
    assert (data_dir / BAD_NAME).exists()


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    """--config pointing nowhere is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="file: does not exist"):
        load_active_config(
            data_dir=tmp_path, config_file=tmp_path / "missing.yaml", env=EnvSettings()
        )


# -- persist_config ------------------------------------------------------


def test_persist_writes_mode_0600_atomically_with_real_secrets(tmp_path: Path) -> None:
    """The persisted file is 0600, holds the real secrets, and no temp file is left."""
    data_dir = tmp_path / "new" / "data"
    path = persist_config(data_dir, parse_config(DOCUMENT))
    assert path == data_dir / ACTIVE_CONFIG_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in data_dir.iterdir()] == [ACTIVE_CONFIG_NAME]
    text = path.read_text(encoding="utf-8")
    assert "mqtt-secret" in text
    assert "odoo-secret" in text
    assert "Kompressor Fräse" in text


def test_persist_replaces_the_previous_file(tmp_path: Path) -> None:
    """A second persist replaces the first, still 0600, still one file."""
    persist_config(tmp_path, parse_config(DOCUMENT))
    os.chmod(tmp_path / ACTIVE_CONFIG_NAME, 0o644)
    persist_config(tmp_path, parse_config(FILE_DOCUMENT))
    assert load_config_file(tmp_path / ACTIVE_CONFIG_NAME) == parse_config(FILE_DOCUMENT)
    assert stat.S_IMODE((tmp_path / ACTIVE_CONFIG_NAME).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [ACTIVE_CONFIG_NAME]


def test_persist_into_an_unusable_directory_is_a_store_error(tmp_path: Path) -> None:
    """A data dir that is a file gives StoreError and leaves nothing behind."""
    blocker = write(tmp_path / "data", "i am a file")
    with pytest.raises(StoreError, match="cannot persist the config"):
        persist_config(blocker, parse_config(DOCUMENT))
    assert blocker.read_text() == "i am a file"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_persist_failure_keeps_the_old_file(tmp_path: Path) -> None:
    """When the rename cannot happen, the previous persisted config is untouched."""
    persist_config(tmp_path, parse_config(DOCUMENT))
    before = (tmp_path / ACTIVE_CONFIG_NAME).read_bytes()
    (tmp_path / ACTIVE_CONFIG_NAME).unlink()
    (tmp_path / ACTIVE_CONFIG_NAME).mkdir()  # os.replace cannot put a file over a directory
    (tmp_path / ACTIVE_CONFIG_NAME / "keep").write_bytes(before)
    with pytest.raises(StoreError):
        persist_config(tmp_path, parse_config(FILE_DOCUMENT))
    assert (tmp_path / ACTIVE_CONFIG_NAME / "keep").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [ACTIVE_CONFIG_NAME]


NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda name: name.strip() != "")
SECRETS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40
) | st.sampled_from(
    ["\x85\x7f\u2028\u2029\ufeff\x00\n\t", "p\u00e4ss \U0001f600", '"quoted" \\ back']
)
# An API key travels in an HTTP header, so only visible ASCII is valid for it.
API_KEYS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40
) | st.sampled_from(['"quoted"\\back', "key-with-$pecial!chars~"])


@given(
    names=st.lists(NAMES, max_size=3),
    password=SECRETS,
    api_key=API_KEYS,
    timeout=st.floats(min_value=1, max_value=86_400),
    label=st.none() | st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20),
)
@settings(max_examples=40, deadline=None)
def test_persist_then_load_gives_an_equal_config(
    names: list[str], password: str, api_key: str, timeout: float, label: str | None
) -> None:
    """persist_config followed by load_active_config returns the same config."""
    config = parse_config(
        {
            "mqtt": {"password": password, "username": password[:5]},
            "odoo": {"base_url": "https://erp.example.com", "api_key": api_key},
            "devices": [
                {
                    "device_id": f"d{index}",
                    "machine_name": name,
                    "mqtt_topic": f"plug{index}/status/pm1:0",
                    "parser_type": "shelly_pm",
                    "session_config": {"message_timeout_s": timeout},
                }
                for index, name in enumerate(names)
            ],
            "version": label,
        }
    )
    with tempfile.TemporaryDirectory() as directory:
        path = persist_config(Path(directory), config)
        loaded = load_active_config(data_dir=Path(directory), config_file=None, env=EnvSettings())
        text = path.read_text(encoding="utf-8")
    assert loaded.source == "persisted"
    assert loaded.config == config
    assert parse_config(yaml.safe_load(text)) == config  # any YAML tool reads it too


# -- effective sections and summary -----------------------------------------


def test_effective_sections_prefer_the_document() -> None:
    """mqtt/odoo from the document when present, else from the environment."""
    env = EnvSettings(
        mqtt=MqttSection(broker="env-broker"), odoo=OdooSection(base_url="http://env-odoo")
    )
    config = parse_config(DOCUMENT)
    assert effective_mqtt(config, env).broker == "broker.local"
    assert effective_odoo(config, env) == config.odoo
    assert effective_mqtt(BridgeConfig(), env).broker == "env-broker"
    assert effective_odoo(BridgeConfig(), env) == env.odoo
    assert effective_odoo(BridgeConfig(), EnvSettings()) is None


def test_summary_is_one_line_without_secrets() -> None:
    """summarize() names devices per parser, the broker and Odoo, and no secret."""
    line = summarize(parse_config(DOCUMENT))
    assert line == (
        "valid: 2 devices (1 shelly_pm, 1 tasmota), mqtt broker.local:1884, "
        "odoo http://odoo:8069 db=odoo"
    )
    assert summarize(BridgeConfig()) == (
        "valid: 0 devices, mqtt from the environment, "
        "odoo from the environment (or events kept locally)"
    )
