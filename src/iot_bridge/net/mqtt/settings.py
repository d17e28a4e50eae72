"""Connection settings for the bridge's MQTT client; they validate themselves."""

from __future__ import annotations

from dataclasses import dataclass, field

from iot_bridge.errors import ConfigError, ConfigIssue
from iot_bridge.topics import topic_name_problem

_MAX_UINT16 = 65_535
_MAX_UINT32 = 4_294_967_295


@dataclass(frozen=True, slots=True)
class WillMessage:
    """The message the broker publishes for us when our connection dies without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True

    def __post_init__(self) -> None:
        issues = _will_issues(self, "will")
        if issues:
            raise ConfigError(issues, source="MQTT will message")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how to connect. ``repr`` never shows the password.

    ``clean_start`` is False for the bridge: the broker keeps our session
    (subscriptions and queued QoS 1 messages) for ``session_expiry_s``.
    ``receive_maximum`` bounds the QoS 1 messages the broker sends us before
    we acknowledge any of them. An empty ``username`` or ``password`` means none.
    """

    host: str = "localhost"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = "iot_bridge"
    keepalive_s: int = 60
    use_tls: bool = False
    ca_file: str | None = None
    tls_insecure: bool = False
    clean_start: bool = False
    session_expiry_s: int = 3600
    will: WillMessage | None = None
    receive_maximum: int = 1000

    def __post_init__(self) -> None:
        issues = _settings_issues(self)
        if issues:
            raise ConfigError(issues, source="MQTT settings")

    @property
    def broker(self) -> str:
        """``host:port``, as shown in logs and ``/health``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_issue(name: str, value: object, low: int, high: int) -> ConfigIssue | None:
    if not _is_int(value):
        return ConfigIssue(name, f"must be an integer, got {type(value).__name__}")
    assert isinstance(value, int)
    if not low <= value <= high:
        return ConfigIssue(name, f"must be between {low} and {high}, got {value}")
    return None


def _settings_issues(settings: MqttSettings) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    if not isinstance(settings.host, str) or not settings.host.strip():
        issues.append(ConfigIssue("host", "must be a non-empty host name or address"))
    elif any(ch.isspace() for ch in settings.host):
        issues.append(ConfigIssue("host", "must not contain whitespace"))
    for name, value, low, high in (
        ("port", settings.port, 1, _MAX_UINT16),
        ("keepalive_s", settings.keepalive_s, 0, _MAX_UINT16),
        ("session_expiry_s", settings.session_expiry_s, 0, _MAX_UINT32),
        ("receive_maximum", settings.receive_maximum, 1, _MAX_UINT16),
    ):
        issue = _int_issue(name, value, low, high)
        if issue:
            issues.append(issue)
    if not isinstance(settings.client_id, str) or not settings.client_id:
        issues.append(ConfigIssue("client_id", "must be a non-empty string"))
    elif len(settings.client_id.encode("utf-8")) > _MAX_UINT16:
        issues.append(ConfigIssue("client_id", "is too long"))
    for name, text in (("username", settings.username), ("password", settings.password)):
        if text is not None and not isinstance(text, str):
            issues.append(ConfigIssue(name, "must be a string or null"))
    for name, flag in (
        ("use_tls", settings.use_tls),
        ("tls_insecure", settings.tls_insecure),
        ("clean_start", settings.clean_start),
    ):
        if not isinstance(flag, bool):
            issues.append(ConfigIssue(name, "must be true or false"))
    if settings.ca_file is not None and (
        not isinstance(settings.ca_file, str) or not settings.ca_file
    ):
        issues.append(ConfigIssue("ca_file", "must be a file path or null"))
    if settings.will is not None and not isinstance(settings.will, WillMessage):
        issues.append(ConfigIssue("will", "must be a WillMessage or null"))
    return issues


def _will_issues(will: WillMessage, prefix: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    problem = topic_name_problem(will.topic)
    if problem:
        issues.append(ConfigIssue(f"{prefix}.topic", problem))
    if not isinstance(will.payload, bytes):
        issues.append(ConfigIssue(f"{prefix}.payload", "must be bytes"))
    if not _is_int(will.qos) or will.qos not in (0, 1, 2):
        issues.append(ConfigIssue(f"{prefix}.qos", "must be 0, 1 or 2"))
    if not isinstance(will.retain, bool):
        issues.append(ConfigIssue(f"{prefix}.retain", "must be true or false"))
    return issues
