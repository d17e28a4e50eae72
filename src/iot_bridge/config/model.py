"""The config document (CONTRACT section 2), validated once at load or push time.

Every model forbids unknown keys (a typo must not silently become a default)
and is strict about types: ``port: "1883"`` or ``use_tls: "yes"`` are errors,
not guesses. ``parse_config`` (``config/parse.py``) is the one entry point
that turns any document into a ``BridgeConfig`` or a ``ConfigError`` listing
every problem with its dotted path (``devices.0.session_config.working_threshold_w``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import idna
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from iot_bridge import topics
from iot_bridge.domain.session_config import SessionConfig
from iot_bridge.parsers import ParserType

MAX_DEVICES: Final = 10_000
MASK: Final = "***"
# Open HTTP connections the bridge serves at once (``http.max_connections``,
# ``BRIDGE_MAX_CONNECTIONS``); each is a file descriptor.
DEFAULT_MAX_CONNECTIONS: Final = 512
MAX_CONNECTIONS_RANGE: Final = (1, 100_000)

_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _checked(*checks: Callable[[str], str | None]) -> AfterValidator:
    """A validator running ``checks`` in order; the first problem becomes the field error."""

    def validate(value: str) -> str:
        for check in checks:
            problem = check(value)
            if problem:
                raise PydanticCustomError("config_value", problem)
        return value

    return AfterValidator(validate)


def _not_blank(value: str) -> str | None:
    return "must not be blank" if value and not value.strip() else None


def _broker_host(value: str) -> str | None:
    if "://" in value:
        return "must be a host name or IP address without a scheme (use use_tls for TLS)"
    if any(char.isspace() or char in "/?#@" for char in value):
        return "must be a host name or IP address (no spaces, '/', '?', '#' or '@')"
    if ":" not in value:  # IPv6 literals are not host names
        try:
            value.encode("idna")
        except UnicodeError:
            return "is not a valid host name (empty label, or a label over 63 characters)"
    return None


def _header_token(value: str) -> str | None:
    # Sent as "Authorization: Bearer <key>": only visible ASCII can go in a header.
    if value and not all("!" <= char <= "~" for char in value):
        return "must be visible ASCII characters without spaces (a trailing newline from a file?)"
    return None


def _http_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - property access validates the port
    except ValueError:
        return "must be an http:// or https:// URL with a valid host and port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host (like http://odoo:8069)"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials; put the key in odoo.api_key"
    if parts.query or parts.fragment or any(char.isspace() for char in value):
        return "must not contain spaces, a query string or a fragment"
    if any(char < " " or char == "\x7f" for char in value):
        return "is not a URL the HTTP client accepts: it holds control characters"
    if not parts.hostname.isascii():
        # The HTTP client encodes such hosts with IDNA 2008: invisible characters fail.
        try:
            idna.encode(parts.hostname.lower())
        except idna.IDNAError as err:
            return f"is not a URL the HTTP client accepts: {err}"
    return None


def _strip_trailing_slashes(value: object) -> object:
    # "http://odoo:8069/" and "http://odoo:8069" are the same server; the
    # sender appends "/ows/iot/event".
    if isinstance(value, str) and value.rstrip("/") and "://" in value:
        return value.rstrip("/")
    return value


def _number_as_text(value: object) -> object:
    # `version: 1.0` in YAML is a float; both fields are informational labels.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _none_as_empty(value: object) -> object:
    return {} if value is None else value


# Every text field rejects lone surrogates: they cannot be sent, stored or logged.
Text = Annotated[str, _checked(topics.unicode_problem)]
SingleLine = Annotated[
    str, _checked(topics.unicode_problem, topics.control_character_problem, _not_blank)
]
Identifier = Annotated[str, _checked(topics.identifier_problem)]
TopicFilter = Annotated[str, _checked(topics.config_topic_filter_problem)]
Label = Annotated[Annotated[Text, Field(max_length=100)] | None, BeforeValidator(_number_as_text)]
DottedPath = Annotated[
    str,
    Field(min_length=1, max_length=200),
    _checked(
        topics.unicode_problem,
        topics.control_character_problem,
        lambda path: (
            "must be a dotted path of non-empty keys (like 'ENERGY.Power')"
            if "" in path.split(".")
            else None
        ),
    ),
]


class MqttSection(BaseModel):
    """The MQTT broker to use; when absent from a document, the environment's."""

    model_config = _CONFIG

    broker: Annotated[SingleLine, Field(min_length=1, max_length=253), _checked(_broker_host)] = (
        "localhost"
    )
    port: int = Field(default=1883, ge=1, le=65_535)
    username: Annotated[Text, Field(max_length=1024)] = ""
    password: Annotated[Text, Field(max_length=1024, repr=False)] = ""
    client_id: Identifier = "iot_bridge"
    keepalive: int = Field(default=60, ge=5, le=3600)
    use_tls: bool = False
    ca_file: Annotated[SingleLine, Field(min_length=1, max_length=4096)] | None = None
    tls_insecure: bool = False


class OdooSection(BaseModel):
    """Where events go; when absent everywhere, events are kept locally only.

    ``base_url`` is stored without trailing slashes.
    """

    model_config = _CONFIG

    base_url: Annotated[
        Text,
        BeforeValidator(_strip_trailing_slashes),
        Field(min_length=1, max_length=2048),
        _checked(_http_url),
    ]
    database: Annotated[SingleLine, Field(max_length=200)] = ""
    username: Annotated[Text, Field(max_length=1024)] = ""
    api_key: Annotated[Text, Field(max_length=4096, repr=False), _checked(_header_token)] = ""
    # jsonrpc: the JSON-RPC envelope for a type="json" route; json: the EVENT object
    # alone for a type="http" route; batch: up to 500 events a call to /ows/iot/events
    # (CONTRACT §2, §6).
    request_format: Literal["jsonrpc", "json", "batch"] = "jsonrpc"


def _topic_prefix(value: str) -> str | None:
    # Published under, so a topic name's rules plus: no wildcards, no empty level
    # (a leading or trailing '/'), no '$' (broker topics).
    if any(char in value for char in "+#"):
        return "must not contain the MQTT wildcards '+' or '#'"
    if value.startswith("$"):
        return "must not start with '$' (reserved for the broker)"
    if "" in value.split("/"):
        return "must be levels separated by single '/' (no leading, trailing or double '/')"
    if value != value.strip():
        return "must not start or end with whitespace"
    return None


TopicPrefix = Annotated[
    str,
    Field(min_length=1, max_length=200),
    _checked(topics.unicode_problem, topics.control_character_problem, _topic_prefix),
]


class StateOutSection(BaseModel):
    """Machine state published back on MQTT (CONTRACT section 8); off unless ``enabled``."""

    model_config = _CONFIG

    enabled: bool = False
    topic_prefix: TopicPrefix = "iot-bridge"
    homeassistant_discovery: bool = True
    discovery_prefix: TopicPrefix = "homeassistant"


# Bounds of the store section (and of BRIDGE_RETENTION_DAYS, BRIDGE_DISK_BUDGET_MB).
MAX_RETENTION_DAYS: Final = 3650.0
MIN_DISK_BUDGET_MB: Final = 16
MAX_DISK_BUDGET_MB: Final = 10_000_000


class StoreSection(BaseModel):
    """The data dir's limits. A key left out (or null) takes the environment's value
    (``BRIDGE_RETENTION_DAYS``, ``BRIDGE_DISK_BUDGET_MB``), else the default: delivered
    events kept 30 days, no disk budget."""

    model_config = _CONFIG

    retention_days: float | None = Field(default=None, gt=0, le=MAX_RETENTION_DAYS)
    disk_budget_mb: int | None = Field(default=None, ge=MIN_DISK_BUDGET_MB, le=MAX_DISK_BUDGET_MB)


class HttpSection(BaseModel):
    """The HTTP API's server; when absent from a document, ``BRIDGE_MAX_CONNECTIONS`` or
    the default."""

    model_config = _CONFIG

    # Over the cap a connection is answered 503 (a few more may ask GET /health).
    max_connections: int = Field(
        default=DEFAULT_MAX_CONNECTIONS, ge=MAX_CONNECTIONS_RANGE[0], le=MAX_CONNECTIONS_RANGE[1]
    )


_defaults = SessionConfig()


class SessionConfigModel(BaseModel):
    """One device's thresholds (W) and timings (s); see ``SessionConfig``."""

    model_config = _CONFIG

    standby_threshold_w: float = Field(default=_defaults.standby_threshold_w, gt=0, le=100_000)
    working_threshold_w: float = Field(default=_defaults.working_threshold_w, gt=0, le=100_000)
    start_debounce_s: float = Field(default=_defaults.start_debounce_s, ge=0, le=3600)
    stop_debounce_s: float = Field(default=_defaults.stop_debounce_s, ge=0, le=3600)
    message_timeout_s: float = Field(default=_defaults.message_timeout_s, ge=1, le=86_400)
    heartbeat_interval_s: float = Field(default=_defaults.heartbeat_interval_s, ge=10, le=86_400)

    @field_validator("working_threshold_w")
    @classmethod
    def _working_at_least_standby(cls, value: float, info: ValidationInfo) -> float:
        standby = info.data.get("standby_threshold_w")
        if standby is not None and value < standby:
            raise PydanticCustomError(
                "config_value",
                "must be at least standby_threshold_w ({standby})",
                {"standby": standby},
            )
        return value

    def to_domain(self) -> SessionConfig:
        """The detector's plain, validated ``SessionConfig``."""
        return SessionConfig(
            standby_threshold_w=self.standby_threshold_w,
            working_threshold_w=self.working_threshold_w,
            start_debounce_s=self.start_debounce_s,
            stop_debounce_s=self.stop_debounce_s,
            message_timeout_s=self.message_timeout_s,
            heartbeat_interval_s=self.heartbeat_interval_s,
        )


class ParserOptions(BaseModel):
    """Optional parser settings; which ones fit which parser is checked by ``make_parser``."""

    model_config = _CONFIG

    component: Annotated[SingleLine, Field(min_length=1, max_length=64)] | None = None
    channel: int | None = Field(default=None, ge=0, le=255)
    # Empty lists and repeats are refused by make_parser, with the item's path.
    channels: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(default=None, max_length=64)
    power_path: DottedPath | None = None
    power_paths: list[DottedPath] | None = Field(default=None, max_length=32)
    energy_path: DottedPath | None = None
    energy_paths: list[DottedPath] | None = Field(default=None, max_length=32)
    energy_unit: Literal["wh", "kwh"] | None = None

    def to_mapping(self) -> dict[str, Any]:
        """The options that are set, as the plain mapping ``make_parser`` takes."""
        return self.model_dump(exclude_none=True)


class DeviceConfig(BaseModel):
    """One machine's plug: where it publishes, how to read it, when it is in use."""

    model_config = _CONFIG

    device_id: Identifier
    machine_name: Annotated[SingleLine, Field(min_length=1, max_length=200)]
    mqtt_topic: TopicFilter
    parser_type: ParserType
    parser_options: Annotated[ParserOptions, BeforeValidator(_none_as_empty)] = ParserOptions()
    session_config: Annotated[SessionConfigModel, BeforeValidator(_none_as_empty)] = (
        SessionConfigModel()
    )

    def to_session_config(self) -> SessionConfig:
        """This device's detector settings."""
        return self.session_config.to_domain()

    @model_validator(mode="after")
    def _share_with_earlier_devices(self, info: ValidationInfo) -> DeviceConfig:
        # With parse_config's context, right after each device: the copies are
        # freed before the next device is read (a lower peak than sharing at the end).
        context = info.context
        shared = context.get(SHARED_PARTS) if isinstance(context, dict) else None
        if isinstance(shared, SharedParts):
            shared.share(self)
        return self


def _part_key(part: BaseModel) -> tuple[object, ...]:
    # repr: -0.0 and 0.0 (or 1 and 1.0) are equal but must stay as pushed.
    return (
        type(part),
        frozenset(part.__pydantic_fields_set__),
        tuple(repr(value) for value in part.__dict__.values()),
    )


class SharedParts:
    """Lets devices with equal settings share one (frozen) model: memory, not behaviour.

    A config of 10,000 devices holds a handful of distinct ``session_config``
    and ``parser_options``; one model each instead of one per device saves
    about 1 KB a device. The sets of fields set are shared the same way (the
    models are frozen: nothing changes them after validation).
    """

    def __init__(self) -> None:
        self._parts: dict[tuple[object, ...], BaseModel] = {}
        self._fields_sets: dict[frozenset[str], set[str]] = {}

    def share(self, device: DeviceConfig) -> None:
        """Replace ``device``'s parts by equal ones seen before (the first of each is kept)."""
        values = device.__dict__
        for name in ("session_config", "parser_options"):
            part = values[name]
            values[name] = self._parts.setdefault(_part_key(part), part)
        fields_set = device.__pydantic_fields_set__
        shared = self._fields_sets.setdefault(frozenset(fields_set), fields_set)
        if shared is not fields_set:
            object.__setattr__(device, "__pydantic_fields_set__", shared)


# The validation context key under which parse_config passes its ``SharedParts``.
SHARED_PARTS: Final = "iot_bridge.shared_parts"


def _share_parts(devices: list[DeviceConfig]) -> None:
    """Share equal parts between ``devices`` (a no-op for parts already shared)."""
    shared = SharedParts()
    for device in devices:
        shared.share(device)


class BridgeConfig(BaseModel):
    """The whole document: the body of ``POST /config`` and of the config files."""

    model_config = _CONFIG

    mqtt: MqttSection | None = None
    odoo: OdooSection | None = None
    state_out: StateOutSection | None = None
    store: StoreSection | None = None
    http: HttpSection | None = None
    devices: list[DeviceConfig] = Field(default_factory=list, max_length=MAX_DEVICES)
    timestamp: Label = None
    version: Label = None

    @field_validator("devices")
    @classmethod
    def _unique_device_ids(
        cls, devices: list[DeviceConfig], info: ValidationInfo
    ) -> list[DeviceConfig]:
        counts = Counter(device.device_id for device in devices)
        duplicates = sorted(device_id for device_id, count in counts.items() if count > 1)
        if duplicates:
            # parse_config reports each repeat at its own path; this guards direct use.
            raise PydanticCustomError(
                "duplicate_device_id",
                "device_id must be unique: {duplicates} used more than once",
                {"duplicates": ", ".join(duplicates)},
            )
        if not (isinstance(info.context, dict) and SHARED_PARTS in info.context):
            _share_parts(devices)  # not shared device by device (a direct model_validate)
        return devices

    def masked(self) -> dict[str, Any]:
        """The document as JSON-ready data with every set secret replaced by ``"***"``.

        ``mqtt.password`` and ``odoo.api_key`` become ``"***"`` when non-empty;
        an empty one stays ``""`` (nothing to hide, and the reader sees none is set).
        """
        data = self.model_dump(mode="json")
        if data["mqtt"] is not None and data["mqtt"]["password"]:
            data["mqtt"]["password"] = MASK
        if data["odoo"] is not None and data["odoo"]["api_key"]:
            data["odoo"]["api_key"] = MASK
        return data
