"""Real mosquitto brokers for tests, each on a free port of 127.0.0.1 (never 1883).

``MosquittoBroker`` writes its config, password file and TLS certificates into
its own directory and runs ``mosquitto -c <conf>``. Fixtures: ``mosquitto``
(one plain broker per test module) and ``mosquitto_factory`` (a callable
making brokers with options; all stopped at teardown). ``publish`` is a tiny
blocking publisher on a raw socket, independent of the client under test.

Register the fixtures with ``pytest_plugins = ["tests.support.mosquitto"]``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mqtt5
import pytest

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
DEFAULT_LOG_TYPES = ("error", "warning", "notice", "information")


def mosquitto_binary() -> str:
    """Path of the mosquitto broker, or a clear failure telling how to install it."""
    for candidate in MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("mosquitto")
    if found:
        return found
    pytest.fail(
        "mosquitto is not installed: the MQTT tests need a real broker "
        "(apt-get install -y mosquitto mosquitto-clients)",
        pytrace=False,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; never 1883)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if port != 1883:
            return port


# --- credentials --------------------------------------------------------------


def password_hash(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """A mosquitto 2 password hash: ``$7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>``."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(
    path: pathlib.Path, users: Mapping[str, str], *, use_tool: bool = True
) -> None:
    """Write a mosquitto ``password_file`` (``mosquitto_passwd -b`` if present, else by hand)."""
    tool = shutil.which("mosquitto_passwd") if use_tool else None
    path.unlink(missing_ok=True)
    if tool is None:
        lines = [f"{user}:{password_hash(password)}\n" for user, password in users.items()]
        path.write_text("".join(lines), encoding="utf-8")
    else:
        for index, (user, password) in enumerate(users.items()):
            create = ["-c"] if index == 0 else []
            subprocess.run(
                [tool, *create, "-b", str(path), user, password],
                check=True,
                capture_output=True,
            )
    path.chmod(0o600)


# --- TLS ------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away CA and a server certificate it signed."""

    ca_file: pathlib.Path
    cert_file: pathlib.Path
    key_file: pathlib.Path


def make_tls_files(
    directory: pathlib.Path,
    *,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    name: str = "iot-bridge test",
) -> TlsFiles:
    """Generate a CA and a server certificate for ``hosts`` with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    validity = (now - dt.timedelta(days=1), now + dt.timedelta(days=30))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles(
        ca_file=directory / "ca.crt",
        cert_file=directory / "server.crt",
        key_file=directory / "server.key",
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    files.key_file.chmod(0o600)
    return files


# --- the broker -------------------------------------------------------------------


class MosquittoBroker:
    """One mosquitto process with its own directory, config, log and port.

    ``persistence`` keeps sessions and queued QoS 1 messages across ``restart()``
    (mosquitto saves its database on SIGTERM; ``kill()`` loses what was not saved).
    ``users`` makes a password file; anonymous clients are then refused unless
    ``allow_anonymous`` says otherwise (``password_tool=False`` hashes the
    passwords here instead of with ``mosquitto_passwd``). ``tls`` makes the
    listener TLS-only with generated certificates (``ca_file`` for clients).
    ``extra_config`` lines are appended to mosquitto.conf.
    """

    def __init__(
        self,
        directory: pathlib.Path,
        *,
        persistence: bool = True,
        users: Mapping[str, str] | None = None,
        allow_anonymous: bool | None = None,
        tls: bool = False,
        port: int | None = None,
        extra_config: Sequence[str] = (),
        log_types: Sequence[str] = DEFAULT_LOG_TYPES,
        password_tool: bool = True,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.persistence = persistence
        self.users = dict(users or {})
        self.allow_anonymous = not self.users if allow_anonymous is None else allow_anonymous
        self.tls = tls
        self.extra_config = list(extra_config)
        self.log_types = list(log_types)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.host)
        self.config_file = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self.output_file = directory / "mosquitto.out"
        self.password_file: pathlib.Path | None = None
        self.tls_files: TlsFiles | None = None
        self._process: subprocess.Popen[bytes] | None = None
        if self.users:
            self.password_file = directory / "passwords"
            write_password_file(self.password_file, self.users, use_tool=password_tool)
        if tls:
            self.tls_files = make_tls_files(directory / "tls")

    @property
    def ca_file(self) -> str | None:
        """The CA certificate clients must trust (None without TLS)."""
        return str(self.tls_files.ca_file) if self.tls_files else None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self.is_running else None  # type: ignore[union-attr]

    @property
    def is_running(self) -> bool:
        """True while the mosquitto process is alive."""
        return self._process is not None and self._process.poll() is None

    def config_text(self) -> str:
        """The mosquitto.conf for the current options."""
        lines = [
            "# written by tests/support/mosquitto.py",
            # Started as root, mosquitto would drop privileges to user `mosquitto`, which
            # cannot read pytest's tmp dirs (mode 0700) nor write the persistence file
            # there. `user root` keeps it as the user that started it; when tests run
            # as a normal user mosquitto ignores this line (it only switches from root).
            "user root",
            f"listener {self.port} {self.host}",
        ]
        if self.tls_files is not None:
            lines += [
                f"cafile {self.tls_files.ca_file}",
                f"certfile {self.tls_files.cert_file}",
                f"keyfile {self.tls_files.key_file}",
            ]
        lines.append(f"allow_anonymous {'true' if self.allow_anonymous else 'false'}")
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.directory}/",
                "persistence_file mosquitto.db",
            ]
        lines += [f"log_dest file {self.log_file}", "connection_messages true"]
        lines += [f"log_type {log_type}" for log_type in self.log_types]
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 10.0) -> MosquittoBroker:
        """Start mosquitto and wait until it accepts connections."""
        if self.is_running:
            return self
        binary = mosquitto_binary()
        for attempt in range(3):
            self.config_file.write_text(self.config_text(), encoding="utf-8")
            with self.output_file.open("ab") as output:
                self._process = subprocess.Popen(
                    [binary, "-c", str(self.config_file)],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            try:
                self.wait_ready(timeout_s)
                return self
            except RuntimeError:
                # The free port was taken in between: pick another, unless fixed.
                if self._fixed_port or attempt == 2 or self.is_running:
                    raise
                self.port = free_port(self.host)
        return self

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Poll until the listener accepts TCP connections; raise with the log if it died."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"mosquitto on {self.address} exited:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mosquitto on {self.address} not ready after {timeout_s} s:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (mosquitto saves its persistence database) and wait for the exit."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen broker would not act on SIGTERM
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout_s)
        self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash; nothing is saved."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(10)
        self._process = None

    def freeze(self) -> None:
        """SIGSTOP: the broker keeps its sockets open but answers nothing (a hung host)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after ``freeze()``."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)

    def restart(self, timeout_s: float = 10.0) -> MosquittoBroker:
        """Stop and start again on the same port."""
        self.stop(timeout_s)
        self._fixed_port = True
        return self.start(timeout_s)

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the broker's log and output, for failure messages."""
        parts = []
        for path in (self.output_file, self.log_file):
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace")[-max_chars:])
        return "\n".join(parts) or "(no log)"

    def client_settings_kwargs(self) -> dict[str, Any]:
        """``host``/``port``/TLS keyword arguments for ``MqttSettings``."""
        return {
            "host": self.host,
            "port": self.port,
            "use_tls": self.tls,
            "ca_file": self.ca_file,
        }

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"MosquittoBroker({self.address}, tls={self.tls}, {state})"


# --- a tiny independent publisher ---------------------------------------------------


def _read_packet(sock: socket.socket, buffer: bytearray) -> mqtt5.Packet:
    while True:
        if buffer:
            try:
                packet, size = mqtt5.read(memoryview(bytes(buffer)))
            except IndexError:
                pass
            else:
                del buffer[:size]
                return packet
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buffer += chunk


def publish(
    broker: MosquittoBroker,
    topic: str,
    payload: bytes | str,
    *,
    qos: int = 1,
    retain: bool = False,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
) -> None:
    """Publish one message (blocking; QoS 1 waits for PUBACK) on a raw socket."""
    publish_many(
        broker,
        [(topic, payload)],
        qos=qos,
        retain=retain,
        username=username,
        password=password,
        client_id=client_id,
    )


def publish_many(
    broker: MosquittoBroker,
    messages: Sequence[tuple[str, bytes | str]],
    *,
    qos: int = 1,
    retain: bool = False,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    timeout_s: float = 10.0,
) -> None:
    """Publish messages in order over one connection, then DISCONNECT normally."""
    if username is None and broker.users:
        username, password = next(iter(broker.users.items()))
    raw = socket.create_connection((broker.host, broker.port), timeout=timeout_s)
    sock: socket.socket = raw
    if broker.tls:
        context = ssl.create_default_context(cafile=broker.ca_file)
        sock = context.wrap_socket(raw, server_hostname=broker.host)
    buffer = bytearray()
    with sock:
        sock.sendall(
            mqtt5.ConnectPacket(
                client_id or f"test-publisher-{secrets.token_hex(4)}",
                username=username,
                password=password.encode() if password is not None else None,
                clean_start=True,
                keep_alive=30,
            ).write()
        )
        connack = _read_packet(sock, buffer)
        if not isinstance(connack, mqtt5.ConnAckPacket) or connack.reason_code.value != 0:
            raise ConnectionError(f"publisher refused by {broker.address}: {connack}")
        for index, (topic, payload) in enumerate(messages, start=1):
            data = payload.encode() if isinstance(payload, str) else payload
            if qos == 0:
                sock.sendall(mqtt5.PublishPacket(topic, data, retain=retain).write())
                continue
            packet_id = (index - 1) % 65535 + 1
            sock.sendall(
                mqtt5.PublishPacket(
                    topic, data, qos=mqtt5.QoS.AT_LEAST_ONCE, retain=retain, packet_id=packet_id
                ).write()
            )
            reply = _read_packet(sock, buffer)
            if not isinstance(reply, mqtt5.PubAckPacket) or reply.packet_id != packet_id:
                raise ConnectionError(f"unexpected reply to PUBLISH: {reply}")
        sock.sendall(mqtt5.DisconnectPacket().write())


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A plain broker (anonymous, persistence on) shared by one test module."""
    broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


BrokerFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrokerFactory]:
    """``factory(**options) -> started MosquittoBroker``; every broker stops at teardown.

    Options are ``MosquittoBroker``'s; ``start=False`` returns it unstarted.
    """
    brokers: list[MosquittoBroker] = []

    def factory(*, start: bool = True, **options: Any) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"), **options)
        brokers.append(broker)
        return broker.start() if start else broker

    try:
        yield factory
    finally:
        for broker in brokers:
            broker.stop()
