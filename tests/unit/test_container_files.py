"""Static checks of the container files: Dockerfile, .dockerignore, compose and mosquitto.conf.

No Docker engine runs in the tests; these pin what can be read from the files:
the image runs as a non-root user with ``/data`` as its volume, the build
context holds what the build copies and nothing secret, and the compose
environment is one the bridge's own environment parser accepts.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_bridge.config.env import settings_from_env

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
MOSQUITTO_CONF = DEPLOY / "mosquitto" / "mosquitto.conf"
ENV_EXAMPLE = DEPLOY / ".env.example"

# CONTRACT section 2: every variable the bridge reads.
BRIDGE_VARIABLES = frozenset(
    {
        "MQTT_BROKER",
        "MQTT_PORT",
        "MQTT_USERNAME",
        "MQTT_PASSWORD",
        "MQTT_CLIENT_ID",
        "MQTT_USE_TLS",
        "BRIDGE_PORT",
        "BRIDGE_API_TOKEN",
        "BRIDGE_HOST",
        "BRIDGE_DATA_DIR",
        "ODOO_BASE_URL",
        "ODOO_DATABASE",
        "ODOO_USERNAME",
        "ODOO_API_KEY",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "LOG_FILE",
        "BRIDGE_RETENTION_DAYS",
        "BRIDGE_DISK_BUDGET_MB",
    }
)
# Variables only the compose file itself reads (host ports).
COMPOSE_ONLY_VARIABLES = frozenset({"BRIDGE_PUBLISHED_PORT", "MQTT_PUBLISHED_PORT"})
VENV = "/opt/iot-bridge"  # the runtime's virtualenv; the systemd unit uses the same path
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


# -- Dockerfile ------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions from the last FROM on."""
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def env_values(stage: list[tuple[str, str]]) -> dict[str, str]:
    """Every ``ENV KEY=VALUE`` of a stage."""
    values: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {item!r} is not KEY=VALUE"
                values[key] = value
    return values


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    """The arguments of the one ``keyword`` instruction of a stage."""
    found = [args for kw, args in stage if kw == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions."""
    return dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The final (runtime) stage."""
    return final_stage(instructions)


def test_dockerfile_parser_rejects_a_dangling_continuation() -> None:
    """A Dockerfile whose last line ends in a backslash is reported, not silently cut."""
    with pytest.raises(AssertionError, match="continued line"):
        dockerfile_instructions("FROM python:3.11-slim\nRUN echo \\\n")


def builder_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the first stage, up to the second FROM."""
    return instructions[: [kw for kw, _ in instructions].index("FROM", 1)]


def test_multi_stage_build_on_python_311_slim(instructions: list[tuple[str, str]]) -> None:
    """A builder stage makes the wheels with pip; the runtime stage is python:3.11-slim."""
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(froms) >= 2
    assert re.fullmatch(r"\S+ AS builder", froms[0], flags=re.IGNORECASE)
    assert froms[0].split()[0] == froms[-1].split()[0] == "python:3.11-slim"
    runs = " ".join(args for kw, args in builder_stage(instructions) if kw == "RUN")
    assert "pip wheel" in runs
    # The venv is filled from those wheels only, offline.
    assert re.search(r"pip install [^&]*--no-index", runs)


def test_runtime_copies_a_venv_without_pip(instructions: list[tuple[str, str]]) -> None:
    """The runtime stage copies the builder's venv, runs no pip, and the venv lost pip/setuptools."""
    runtime = final_stage(instructions)
    copies = [args.split() for kw, args in runtime if kw == "COPY"]
    assert copies == [["--from=builder", VENV, VENV]]
    assert not any("pip" in args for kw, args in runtime if kw == "RUN")
    assert env_values(runtime)["PATH"].startswith(f"{VENV}/bin:")
    builder_runs = " ".join(args for kw, args in builder_stage(instructions) if kw == "RUN")
    assert re.search(r"pip uninstall --yes pip setuptools\b", builder_runs)
    assert f"python -m venv {VENV}" in builder_runs


def test_runtime_runs_as_a_non_root_user(runtime: list[tuple[str, str]]) -> None:
    """The last USER of the runtime stage is neither root nor uid 0, and it is created there."""
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    runs = " ".join(args for kw, args in runtime if kw == "RUN")
    created = re.search(r"useradd\b[^&]*?--uid (\d+)\b[^&]* bridge\b", runs)
    assert created, "no useradd of the bridge user with a fixed uid"
    assert user in {"bridge", created.group(1)}
    assert "chown bridge:bridge /data" in runs


def test_data_volume_and_environment(runtime: list[tuple[str, str]]) -> None:
    """/data is the volume and BRIDGE_DATA_DIR; the HTTP port is 8080 and exposed."""
    assert json.loads(only(runtime, "VOLUME")) == ["/data"]
    env = env_values(runtime)
    assert env["BRIDGE_DATA_DIR"] == "/data"
    assert env["BRIDGE_PORT"] == "8080"
    assert only(runtime, "EXPOSE").split() == [env["BRIDGE_PORT"]]
    assert set(env) - BRIDGE_VARIABLES <= {
        "PATH",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_CACHE_DIR",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
    }
    assert settings_from_env(env).data_dir == Path("/data")


def test_healthcheck_probes_health_with_python(runtime: list[tuple[str, str]]) -> None:
    """The HEALTHCHECK runs python (slim has no curl) against /health on BRIDGE_PORT."""
    args = only(runtime, "HEALTHCHECK")
    options, _, command = args.partition("CMD ")
    assert "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    ast.parse(code)
    assert "/health" in code
    assert "127.0.0.1" in code
    assert "BRIDGE_PORT" in code


def test_entrypoint_is_the_console_script(runtime: list[tuple[str, str]]) -> None:
    """ENTRYPOINT is the iot-bridge script pyproject.toml declares; CMD is ``run``."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "iot-bridge" in pyproject["project"]["scripts"]
    assert json.loads(only(runtime, "ENTRYPOINT")) == ["iot-bridge"]
    assert json.loads(only(runtime, "CMD")) == ["run"]


# -- .dockerignore ---------------------------------------------------------------------


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (Docker's rules)."""
    pattern = pattern.strip().strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out)


def is_excluded(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching rule wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = dockerignore_regex(pattern[1:] if negated else pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    """The .dockerignore rules, comments and blank lines dropped."""
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    """The matcher: parents match, ``!`` re-includes, the last rule wins, ``**`` spans dirs."""
    rules = ["*", "!src/", "**/__pycache__"]
    assert is_excluded("tests/unit/x.py", rules)
    assert not is_excluded("src/pkg/x.py", rules)
    assert is_excluded("src/pkg/__pycache__/x.pyc", rules)
    assert not is_excluded("a/b.txt", ["a/*.py"])
    assert is_excluded("a/b/c.py", ["a/**/*.py"])


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "src/iot_bridge/__init__.py", "src/iot_bridge/py.typed"],
)
def test_build_context_holds_what_the_build_needs(path: str, ignore_patterns: list[str]) -> None:
    """The files the builder copies are in the build context."""
    assert (ROOT / path).exists()
    assert not is_excluded(path, ignore_patterns)


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        "data/bridge.db",
        "data/config-active.yaml",
        "deploy/.env",
        ".env",
        "tests/unit/test_container_files.py",
        ".venv/bin/python",
        "src/iot_bridge/__pycache__/cli.cpython-311.pyc",
        "src/iot_bridge.egg-info/PKG-INFO",
    ],
)
def test_build_context_leaves_out_secrets_and_clutter(
    path: str, ignore_patterns: list[str]
) -> None:
    """Git history, data dirs, env files, tests and generated files stay out of the context."""
    assert is_excluded(path, ignore_patterns)


def test_every_copied_source_exists_and_is_in_the_context(
    instructions: list[tuple[str, str]], ignore_patterns: list[str]
) -> None:
    """Each COPY from the context names files that exist and that .dockerignore lets through."""
    copies = [args for kw, args in instructions if kw == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        *sources, _destination = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not is_excluded(source.rstrip("/"), ignore_patterns), source


# -- docker-compose.yml ----------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``; ValueError when required."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        if operator in (":-", ":?") and not value:
            value = None
        if value is not None:
            return value
        if operator in ("?", ":?"):
            raise ValueError(f"{name}: {argument}")
        return argument if operator in ("-", ":-") else ""

    return _INTERPOLATION.sub(replace, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file, comments skipped."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file."""
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def bridge_environment(compose: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The bridge service's environment after interpolation with ``env``."""
    raw = compose["services"]["iot-bridge"]["environment"]
    assert isinstance(raw, dict), "environment is written as a mapping"
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def test_compose_has_the_bridge_and_mosquitto(compose: dict[str, Any]) -> None:
    """Two services: the bridge built from the repository's Dockerfile, and eclipse-mosquitto:2."""
    services = compose["services"]
    assert set(services) == {"iot-bridge", "mosquitto"}
    build = services["iot-bridge"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert "mosquitto" in services["iot-bridge"]["depends_on"]
    assert "version" not in compose  # obsolete in the Compose Specification


def test_compose_volumes_networks_and_mounts(compose: dict[str, Any]) -> None:
    """bridge-data holds /data; both services share the declared odoo network; mounts exist."""
    services = compose["services"]
    assert "bridge-data:/data" in services["iot-bridge"]["volumes"]
    assert "bridge-data" in compose["volumes"]
    for name, service in services.items():
        for network in service["networks"]:
            assert network in compose["networks"], name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), source
            else:
                assert source in compose["volumes"], source
    assert "odoo18-nw" in compose["networks"]
    mounts = services["mosquitto"]["volumes"]
    assert any(m.endswith(":/mosquitto/config/mosquitto.conf:ro") for m in mounts)


def test_compose_environment_is_valid_for_the_bridge(compose: dict[str, Any]) -> None:
    """With .env.example filled in, the bridge's environment parser accepts the compose env."""
    example = read_env_file(ENV_EXAMPLE)
    example["BRIDGE_API_TOKEN"] = "a-long-random-token"
    env = bridge_environment(compose, example)
    assert set(env) <= BRIDGE_VARIABLES
    settings = settings_from_env(env)
    assert settings.data_dir == Path("/data")
    assert settings.api_token == "a-long-random-token"
    assert settings.bridge_port == 8080
    assert settings.log_format == "json"


def test_compose_without_odoo_keeps_events_locally(compose: dict[str, Any]) -> None:
    """With only the token set, ODOO_BASE_URL is empty, so the bridge runs without Odoo."""
    env = bridge_environment(compose, {"BRIDGE_API_TOKEN": "t"})
    assert env["ODOO_BASE_URL"] == ""
    assert settings_from_env(env).odoo is None


def test_compose_requires_the_api_token(compose: dict[str, Any]) -> None:
    """No BRIDGE_API_TOKEN (unset or empty) is an error that names it, never an open API."""
    for env in ({}, {"BRIDGE_API_TOKEN": ""}):
        with pytest.raises(ValueError, match="BRIDGE_API_TOKEN"):
            bridge_environment(compose, env)


def test_compose_token_is_not_written_in_the_file(compose: dict[str, Any]) -> None:
    """The token and the Odoo key come from the environment, not from a literal in the file."""
    raw = compose["services"]["iot-bridge"]["environment"]
    assert raw["BRIDGE_API_TOKEN"].startswith("${BRIDGE_API_TOKEN")
    assert raw["ODOO_API_KEY"].startswith("${ODOO_API_KEY")
    assert read_env_file(ENV_EXAMPLE)["BRIDGE_API_TOKEN"] == ""


def test_env_example_names_only_known_variables() -> None:
    """.env.example lists bridge variables and the compose file's own port variables only."""
    assert set(read_env_file(ENV_EXAMPLE)) <= BRIDGE_VARIABLES | COMPOSE_ONLY_VARIABLES
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored


def test_compose_healthcheck_matches_the_bridge_port(compose: dict[str, Any]) -> None:
    """The healthcheck probes /health with python on the port the bridge listens on."""
    bridge = compose["services"]["iot-bridge"]
    env = bridge_environment(compose, {"BRIDGE_API_TOKEN": "t"})
    test = bridge["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    ast.parse(test[3])
    assert f"http://127.0.0.1:{env['BRIDGE_PORT']}/health" in test[3]
    published = [interpolate(p, {}) for p in bridge["ports"]]
    assert f"8080:{env['BRIDGE_PORT']}" in published


def test_no_personal_data_in_deploy_files() -> None:
    """No e-mail address (the seed's compose had one) in any container file."""
    # deploy/.env is the operator's own (git-ignored) file: it may well hold an address.
    files = [
        DOCKERFILE,
        DOCKERIGNORE,
        *(p for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".env"),
    ]
    for path in files:
        assert not EMAIL.search(path.read_text(encoding="utf-8")), path


def test_interpolate_rejects_and_defaults() -> None:
    """The test's compose interpolation: defaults, required variables, plain references."""
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("${A}", {}) == ""
    with pytest.raises(ValueError, match="A: needed"):
        interpolate("${A:?needed}", {"A": ""})


# -- mosquitto.conf --------------------------------------------------------------------


def mosquitto_options(text: str) -> list[tuple[str, str]]:
    """(option, value) lines of a mosquitto.conf, comments and blank lines dropped."""
    options = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            options.append((name, value.strip()))
    return options


def test_mosquitto_listens_where_the_bridge_connects(compose: dict[str, Any]) -> None:
    """A listener on the MQTT_PORT the bridge uses, published by compose; anonymity is explicit."""
    options = mosquitto_options(MOSQUITTO_CONF.read_text(encoding="utf-8"))
    listeners = [value.split()[0] for name, value in options if name == "listener"]
    env = bridge_environment(compose, {"BRIDGE_API_TOKEN": "t"})
    assert env["MQTT_PORT"] in listeners
    assert env["MQTT_BROKER"] == "mosquitto"
    published = [interpolate(p, {}) for p in compose["services"]["mosquitto"]["ports"]]
    assert f"1883:{env['MQTT_PORT']}" in published
    assert "allow_anonymous" in dict(options)  # mosquitto 2 refuses everyone without it


def test_mosquitto_persists_into_its_volume(compose: dict[str, Any]) -> None:
    """Persistence is on and writes into the mounted data volume, queue large enough for outages."""
    options = dict(mosquitto_options(MOSQUITTO_CONF.read_text(encoding="utf-8")))
    assert options["persistence"] == "true"
    location = options["persistence_location"].rstrip("/")
    mounts = compose["services"]["mosquitto"]["volumes"]
    assert any(m.split(":")[1] == location for m in mounts)
    assert int(options["max_queued_messages"]) >= 10_000
