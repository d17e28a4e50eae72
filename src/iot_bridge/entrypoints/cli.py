"""The ``iot-bridge`` command line (CONTRACT section 1).

Exit codes: 0 success, 2 bad usage or invalid config, 1 anything else. A
user mistake is one clear sentence on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from iot_bridge import __version__
from iot_bridge.entrypoints.exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from iot_bridge.errors import BridgeError, ConfigError


def _fail(message: str, code: int) -> int:
    print(f"iot-bridge: {message}", file=sys.stderr)
    return code


def _config_error(err: ConfigError) -> int:
    print(f"iot-bridge: invalid {err.source}:", file=sys.stderr)
    for issue in err.issues:
        print(f"  {issue}", file=sys.stderr)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands and their flags."""
    parser = argparse.ArgumentParser(
        prog="iot-bridge",
        description="Smart-plug power readings in, machine-usage sessions out to Odoo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the service: MQTT in, sessions, events out, HTTP API"
    )
    run.add_argument("--config", type=Path, help="initial config file (YAML or JSON)")
    run.add_argument(
        "--data-dir", type=Path, help="where events and state live (BRIDGE_DATA_DIR, ./data)"
    )
    run.add_argument("--host", help="HTTP listen address (BRIDGE_HOST, 0.0.0.0)")
    run.add_argument("--port", type=int, help="HTTP port (BRIDGE_PORT, 8080)")

    from iot_bridge.demo.simulate import add_simulate_arguments

    simulate = commands.add_parser(
        "simulate", help="publish real-shaped Shelly Gen3 status/pm1:0 messages"
    )
    add_simulate_arguments(simulate)

    replay = commands.add_parser(
        "replay", help="feed a recorded trace through the detector, offline"
    )
    replay.add_argument("trace", type=Path, metavar="TRACE.jsonl")
    replay.add_argument("--config", type=Path, required=True, help="config file with the devices")

    demo = commands.add_parser(
        "demo", help="zero set-up: broker, simulated machines and the bridge"
    )
    demo.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    demo.add_argument("--speed", type=float, default=10.0, help="time compression of the machines")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--data-dir", type=Path, default=None, help="keep the demo's data here")

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command not in ("run", "demo"):
        from iot_bridge.logs import configure_logging

        # stdout is the command's output (replay prints events there): logs go to stderr.
        configure_logging(
            level=os.environ.get("LOG_LEVEL") or "WARNING",
            fmt=os.environ.get("LOG_FORMAT") or "json",
        )
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "simulate":
            from iot_bridge.demo.simulate import run_simulate

            return run_simulate(args)
        if args.command == "replay":
            return _replay(args)
        if args.command == "demo":
            from iot_bridge.demo.run import run_demo

            return run_demo(args)
        if args.command == "config":
            return _config_check(args)
    except ConfigError as err:
        return _config_error(err)
    except KeyboardInterrupt:
        return EXIT_OK
    except BridgeError as err:
        return _fail(str(err), EXIT_FAILURE)
    return _fail(f"unknown command {args.command}", EXIT_USAGE)


def _run(args: argparse.Namespace) -> int:
    from iot_bridge.bootstrap import ServiceOptions, serve
    from iot_bridge.config.sources import settings_from_env
    from iot_bridge.logs import configure_logging

    env = settings_from_env(os.environ)
    configure_logging(level=env.log_level, fmt=env.log_format, file=env.log_file)
    options = ServiceOptions(
        env=env,
        config_file=args.config,
        data_dir=args.data_dir or env.data_dir,
        host=args.host or env.bridge_host,
        port=env.bridge_port if args.port is None else args.port,
    )
    if not 0 <= options.port <= 65535:
        return _fail(f"--port must be 0..65535, got {options.port}", EXIT_USAGE)
    asyncio.run(serve(options))
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from iot_bridge.config.sources import load_config_file
    from iot_bridge.domain.events import Event
    from iot_bridge.service.replay.trace import TraceError, replay

    config = load_config_file(args.config)
    try:
        trace = args.trace.open(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        return _fail(f"cannot read trace {args.trace}: {err.strerror or err}", EXIT_USAGE)
    out = sys.stdout.buffer

    def emit(event: Event) -> None:
        out.write(orjson.dumps(event.to_dict()) + b"\n")

    try:
        with trace:
            replay(trace, config, emit)
    except BrokenPipeError:
        # `iot-bridge replay ... | head`: the reader is gone, which is fine.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except TraceError as err:
        return _fail(f"{args.trace}: {err}", EXIT_USAGE)
    except UnicodeDecodeError as err:
        return _fail(f"{args.trace}: not UTF-8 text ({err.reason})", EXIT_USAGE)
    out.flush()
    return EXIT_OK


def _config_check(args: argparse.Namespace) -> int:
    from iot_bridge.config.sources import load_config_file, summarize

    config = load_config_file(args.file)
    print(summarize(config))
    return EXIT_OK
