"""A real Odoo 18 with the ``open_workshop_mqtt`` addon, for the whole-system tests and benchmarks.

The Odoo source and its venv come from the environment (``ODOO_SRC``,
``ODOO_PY``, ``ODOO_DB_ARGS``: the exports of ``../shared/odoo/setup.sh`` or a
user's own Odoo 18 checkout). ``prepare_kit`` builds the addon as a wheel with
``whool`` (``python -m build --wheel``) and installs it with pip into a venv of
its own that is layered on the Odoo venv (a ``.pth`` adds the Odoo venv's
site-packages): Odoo then finds the addon under ``site-packages/odoo/addons``
with no addons-path entry, and the Odoo venv itself is not changed (a wheel
installed there would shadow every other checkout's ``--addons-path``, since
Odoo looks in site-packages first).

``OdooKit`` runs Odoo's command line in that venv: installing the addon into a
fresh database (optionally with its tests, whose log ``addon_test_report``
reads), dropping databases, and ``OdooServer``, one server on free ports.
Every database made here is named ``owe_...``.

Run as a script it does what ``scripts/odoo-test`` needs::

    python3 -m tests.odoo.kit prepare WORK_DIR    # prints OWE_ODOO_PY=<python with the wheel>
    python3 -m tests.odoo.kit addon-tests         # the addon's own tests, Odoo's runner
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
ADDON = "open_workshop_mqtt"
ADDON_DIR = ROOT / "odoo_addons" / ADDON
DB_PREFIX = "owe_"
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "admin"  # what a database made without demo data gives its admin
# Odoo's log line: "<date> <time> <pid> <LEVEL> <db> <logger>: <message>".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ (?P<level>[A-Z]+) (?P<rest>.*)$")
TEST_SUMMARY = re.compile(
    r"odoo\.tests\.result: (?P<failed>\d+) failed, (?P<errors>\d+) error\(s\) of "
    r"(?P<run>\d+) tests when loading database"
)


# Odoo's multi-process server (--workers=N, as production runs it) also starts its gevent
# process for the websocket; the kit's venv leaves gevent out, so it is added here with
# the versions Odoo 18's requirements.txt pins per Python.
GEVENT_PINS: dict[tuple[int, int], tuple[str, ...]] = {
    (3, 10): ("gevent==21.8.0", "greenlet==1.1.2"),
    (3, 11): ("gevent==22.10.2", "greenlet==2.0.2"),
    (3, 12): ("gevent==24.2.1", "greenlet==3.0.3"),
}


class KitError(RuntimeError):
    """The Odoo kit cannot be used (missing source, a failed build or install)."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now (never a standard one)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in (1883, 5432, 8069, 8072, 8080):
            return port


def new_db_name(purpose: str) -> str:
    """A fresh database name: ``owe_<purpose>_<random>``."""
    return f"{DB_PREFIX}{purpose}_{secrets.token_hex(4)}"


def _run(args: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], text=True, check=False, **kwargs)


# -- preparing the venv with the wheel ----------------------------------------------


def load_odoo_env() -> None:
    """Set ``ODOO_SRC``/``ODOO_PY``/``ODOO_DB_ARGS`` from ``../shared/odoo/setup.sh`` if unset.

    The script installs PostgreSQL and Odoo's venv the first time (its progress
    goes to stderr); what it prints on stdout are the exports.
    """
    if os.environ.get("ODOO_SRC"):
        return
    script = ROOT.parent / "shared" / "odoo" / "setup.sh"
    if not script.is_file():
        raise KitError(f"ODOO_SRC is not set and there is no {script}")
    out = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:
        raise KitError(f"{script} failed (exit {out.returncode})")
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        if key in ("ODOO_SRC", "ODOO_PY", "ODOO_DB_ARGS"):
            os.environ[key] = " ".join(shlex.split(value))


def _site_packages(python: Path) -> Path:
    out = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
    )
    if out.returncode != 0:
        raise KitError(f"{python} does not run: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def _version(python: Path) -> tuple[int, int]:
    out = _run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True)
    major, minor = out.stdout.split()
    return int(major), int(minor)


def _pip(python: Path, *args: str | Path) -> None:
    out = _run(
        [python, "-m", "pip", "--disable-pip-version-check", "-q", *args], capture_output=True
    )
    if out.returncode != 0:
        raise KitError(f"pip {' '.join(map(str, args))} failed:\n{out.stdout}{out.stderr}")


def untracked_addon_files() -> list[str]:
    """Files of the addon that git does not track: whool leaves them out of the wheel."""
    out = _run(
        ["git", "ls-files", "--others", "--exclude-standard", "--", str(ADDON_DIR)],
        capture_output=True,
        cwd=ROOT,
    )
    return out.stdout.split() if out.returncode == 0 else []


def prepare_kit(work: Path, *, log: Any = sys.stderr) -> Path:
    """Make ``work/venv`` (layered on ``ODOO_PY``'s venv) with the addon's wheel; its python.

    Also installs ``websocket-client`` there when the Odoo venv lacks it (Odoo's
    browser tours talk to chromium through it).
    """
    odoo_py = Path(os.environ.get("ODOO_PY", ""))
    if not os.environ.get("ODOO_SRC") or not odoo_py.is_file():
        raise KitError(
            "ODOO_SRC and ODOO_PY must name an Odoo 18 source and its python: "
            'run eval "$(../shared/odoo/setup.sh)" first, or use scripts/odoo-test'
        )
    if not (ADDON_DIR / "__manifest__.py").is_file():
        raise KitError(f"no addon at {ADDON_DIR}")
    venv = work / "venv"
    python = venv / "bin" / "python"
    started = time.monotonic()
    # The base interpreter of the Odoo venv makes the new one (python -m venv from inside
    # a venv uses its base), so compiled dependencies match.
    out = _run([odoo_py, "-m", "venv", venv], capture_output=True)
    if out.returncode != 0:
        raise KitError(f"cannot make a venv with {odoo_py}: {out.stderr.strip()}")
    # addsitedir (not a bare path line) so the Odoo venv's own .pth files apply too.
    layer = _site_packages(python) / "odoo-venv.pth"
    layer.write_text(f"import site; site.addsitedir({str(_site_packages(odoo_py))!r})\n")
    _pip(python, "install", "build")
    if _run([python, "-c", "import websocket"], capture_output=True).returncode != 0:
        _pip(python, "install", "websocket-client==1.8.0")
    if _run([python, "-c", "import gevent"], capture_output=True).returncode != 0:
        _pip(python, "install", *GEVENT_PINS.get(_version(python), ("gevent",)))
    untracked = untracked_addon_files()
    if untracked:
        print(
            f"odoo-test: WARNING: {len(untracked)} untracked file(s) of the addon are not "
            f"in the wheel (whool packages what git tracks): {' '.join(untracked[:5])}",
            file=log,
        )
    dist = work / "dist"
    out = _run([python, "-m", "build", "--wheel", "--outdir", dist, ADDON_DIR], capture_output=True)
    wheels = sorted(dist.glob("*.whl"))
    if out.returncode != 0 or len(wheels) != 1:
        raise KitError(f"building the addon's wheel failed:\n{out.stdout[-4000:]}{out.stderr}")
    # --no-deps: its requirement on the `odoo` distribution is met by the source run here.
    _pip(python, "install", "--no-deps", wheels[0])
    manifest = _site_packages(python) / "odoo" / "addons" / ADDON / "__manifest__.py"
    if not manifest.is_file():
        raise KitError(f"the wheel {wheels[0].name} did not install {manifest}")
    print(
        f"odoo-test: {wheels[0].name} installed in {venv} ({time.monotonic() - started:.0f} s)",
        file=log,
    )
    return python


# -- Odoo's command line ---------------------------------------------------------------


@dataclass(frozen=True)
class OdooKit:
    """Odoo's source, the python that has the addon, the database options, a work dir."""

    src: Path
    python: Path
    db_args: tuple[str, ...]
    work: Path

    @classmethod
    def from_env(cls, work: Path) -> OdooKit:
        """The kit of ``ODOO_SRC``/``ODOO_DB_ARGS`` with ``OWE_ODOO_PY`` (prepared) as python."""
        python = os.environ.get("OWE_ODOO_PY")
        if not python:
            raise KitError("OWE_ODOO_PY is not set: run python3 -m tests.odoo.kit prepare first")
        return cls(
            src=Path(os.environ["ODOO_SRC"]),
            python=Path(python),
            db_args=tuple(shlex.split(os.environ.get("ODOO_DB_ARGS", ""))),
            work=work,
        )

    def command(self, *args: str, subcommand: str | None = None) -> list[str]:
        """``odoo [subcommand] <database options> <args>``."""
        head = [str(self.python), str(self.src / "setup" / "odoo")]
        return [*head, *([subcommand] if subcommand else []), *self.db_args, *args]

    def env(self) -> dict[str, str]:
        """The environment of an Odoo process: the source importable, nothing of ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONPATH"] = str(self.src)
        return env

    def data_dir(self, db: str) -> Path:
        """Odoo's data dir (filestore, sessions) for one database."""
        path = self.work / "odoo-data" / db
        path.mkdir(parents=True, exist_ok=True)
        return path

    def install(
        self, db: str, *, log_file: Path, tests: bool = False, timeout_s: float = 1800
    ) -> int:
        """``-i open_workshop_mqtt`` into ``db`` (created), optionally with its tests; exit code."""
        args = [
            "-d", db, "-i", ADDON, "--without-demo=all", "--stop-after-init",
            "--data-dir", str(self.data_dir(db)), "--logfile", str(log_file),
            "--http-interface=127.0.0.1", f"--http-port={free_port()}",
            f"--gevent-port={free_port()}", "--max-cron-threads=0",
        ]  # fmt: skip
        if tests:
            # Only the addon's tests: a fresh database also installs base, web and mail,
            # whose own tests would otherwise run too.
            args += ["--test-enable", f"--test-tags=/{ADDON}", "--log-level=test"]
        out = _run(self.command(*args), env=self.env(), timeout=timeout_s, capture_output=True)
        if out.stdout or out.stderr:
            with log_file.open("a") as log:
                log.write(out.stdout + out.stderr)
        return out.returncode

    def drop(self, db: str) -> None:
        """Drop ``db`` and its filestore (only ``owe_`` databases)."""
        if not db.startswith(DB_PREFIX):
            raise ValueError(f"refusing to drop {db!r}: not one of ours")
        _run(
            self.command("--data-dir", str(self.data_dir(db)), "drop", db, subcommand="db"),
            env=self.env(),
            capture_output=True,
            timeout=120,
        )


# -- the addon's own tests ---------------------------------------------------------------


@dataclass
class AddonTestReport:
    """What Odoo's test runner said in its log."""

    exit_code: int
    tests_run: int = 0
    failed: int = 0
    errors: int = 0
    error_lines: list[str] = field(default_factory=list)
    summary_found: bool = False

    @property
    def ok(self) -> bool:
        """Green: exit 0, a summary with tests run and none failed, no ERROR/CRITICAL line."""
        return (
            self.exit_code == 0
            and self.summary_found
            and self.tests_run > 0
            and self.failed == 0
            and self.errors == 0
            and not self.error_lines
        )

    def describe(self) -> str:
        """One line for people."""
        return (
            f"{self.tests_run} tests, {self.failed} failed, {self.errors} error(s), "
            f"{len(self.error_lines)} ERROR/CRITICAL log line(s), exit code {self.exit_code}"
            + ("" if self.summary_found else ", no test summary in the log")
        )


def addon_test_report(log_text: str, exit_code: int) -> AddonTestReport:
    """Read an Odoo test run's log: its summary line, and every ERROR or CRITICAL line.

    Odoo 18 returns a non-zero exit code when a test fails, but not for an error
    logged outside a test (a failed data file, a traceback in a cron) nor when
    no test ran at all (the module not found is a WARNING); all of those count.
    """
    report = AddonTestReport(exit_code=exit_code)
    for line in log_text.splitlines():
        match = LOG_LINE.match(line)
        if match is None:
            continue
        summary = TEST_SUMMARY.search(line)
        if summary is not None:
            report.summary_found = True
            report.tests_run = int(summary["run"])
            report.failed = int(summary["failed"])
            report.errors = int(summary["errors"])
        if match["level"] in ("ERROR", "CRITICAL"):
            report.error_lines.append(line)
    return report


def run_addon_tests(kit: OdooKit, *, out: Any = sys.stderr) -> AddonTestReport:
    """Install the addon into a fresh database with ``--test-enable``; the report of its log."""
    db = new_db_name("t")
    log_file = kit.work / f"{db}.log"
    started = time.monotonic()
    print(f"odoo-test: the addon's tests in database {db} (log {log_file})", file=out)
    try:
        code = kit.install(db, log_file=log_file, tests=True)
    finally:
        kit.drop(db)
    report = addon_test_report(log_file.read_text(errors="replace"), code)
    print(f"odoo-test: {report.describe()} in {time.monotonic() - started:.0f} s", file=out)
    return report


# -- a server ----------------------------------------------------------------------------


class OdooServer:
    """One Odoo server on free ports of 127.0.0.1, serving one database (``--db-filter``).

    ``workers=0`` is Odoo's threaded server; ``workers=1`` one prefork HTTP worker
    (that mode also runs Odoo's gevent process, which needs gevent in the venv).
    ``db_filter=False`` serves the database by ``-d`` alone: Odoo then takes the
    database list from its configuration instead of asking PostgreSQL (on a new
    connection) at every request that carries no session cookie.
    """

    def __init__(
        self,
        kit: OdooKit,
        db: str,
        *,
        workers: int = 0,
        cron_threads: int = 1,
        log_file: Path | None = None,
        extra_args: Sequence[str] = (),
        db_filter: bool = True,
    ) -> None:
        self.kit = kit
        self.db_filter = db_filter
        self.db = db
        self.workers = workers
        self.cron_threads = cron_threads
        self.port = free_port()
        self.gevent_port = free_port()
        self.log_file = log_file or kit.work / f"{db}-server.log"
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 180.0) -> OdooServer:
        """Start and wait until ``/web/login`` answers 200."""
        args = self.kit.command(
            "-d", self.db, *([f"--db-filter=^{self.db}$"] if self.db_filter else []),
            "--data-dir", str(self.kit.data_dir(self.db)), "--logfile", str(self.log_file),
            "--http-interface=127.0.0.1", f"--http-port={self.port}",
            f"--gevent-port={self.gevent_port}", f"--workers={self.workers}",
            f"--max-cron-threads={self.cron_threads}", *self.extra_args,
        )  # fmt: skip
        self.process = subprocess.Popen(
            args,
            env=self.kit.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: workers go down with it
        )
        self.wait_ready(timeout_s)
        return self

    def is_running(self) -> bool:
        """True while the server process lives."""
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``/web/login`` until it answers 200; fail with the log's end if the server dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise KitError(f"Odoo exited while starting:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/web/login", timeout=30).status_code == 200:
                    return
            time.sleep(0.2)
        raise KitError(f"Odoo did not answer /web/login within {timeout_s} s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (a graceful stop, as an administrator's restart) and wait."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        # Workers and the gevent child of this group, should any outlive the master.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL to the server's process group."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def log_text(self) -> str:
        """Everything the server logged so far."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the server's log, for failure messages."""
        return self.log_text()[-chars:] or "(empty log)"

    def error_lines(self) -> list[str]:
        """The ERROR and CRITICAL lines of the server's log."""
        return addon_test_report(self.log_text(), 0).error_lines


class OdooRpc:
    """XML-RPC as a user of one database (``execute_kw`` with a password or an API key)."""

    def __init__(
        self, url: str, db: str, login: str = ADMIN_LOGIN, password: str = ADMIN_PASSWORD
    ) -> None:
        self.url = url
        self.db = db
        self.password = password
        common = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/common", allow_none=True)
        uid = common.authenticate(db, login, password, {})
        if not uid:
            raise KitError(f"{login} cannot log in to {db} at {url}")
        self.uid = int(uid)

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """``execute_kw(model, method, args, kwargs)``; a new connection each time (Odoo restarts)."""
        proxy = xmlrpc.client.ServerProxy(f"{self.url}/xmlrpc/2/object", allow_none=True)
        return proxy.execute_kw(self.db, self.uid, self.password, model, method, list(args), kwargs)

    def search_read(
        self, model: str, domain: list[Any], fields: list[str], **kwargs: Any
    ) -> list[dict[str, Any]]:
        """``search_read`` with a domain and the fields wanted."""
        return list(self.call(model, "search_read", domain, fields=fields, **kwargs))

    def ref(self, xmlid: str) -> int:
        """The database id of an XML id (``module.name``)."""
        module, name = xmlid.split(".", 1)
        found = self.search_read(
            "ir.model.data", [("module", "=", module), ("name", "=", name)], ["res_id"]
        )
        if not found:
            raise KitError(f"no record {xmlid}")
        return int(found[0]["res_id"])


@contextlib.contextmanager
def installed_database(kit: OdooKit, purpose: str) -> Iterator[str]:
    """A fresh ``owe_<purpose>_...`` database with the addon installed; dropped afterwards."""
    db = new_db_name(purpose)
    log_file = kit.work / f"{db}-install.log"
    try:
        code = kit.install(db, log_file=log_file)
        errors = addon_test_report(log_file.read_text(errors="replace"), code).error_lines
        if code != 0 or errors:
            tail = log_file.read_text(errors="replace")[-6000:]
            raise KitError(f"installing {ADDON} into {db} failed (exit {code}):\n{tail}")
        yield db
    finally:
        kit.drop(db)


# -- command line (scripts/odoo-test) ------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``prepare WORK`` prints ``OWE_ODOO_PY=...``; ``addon-tests`` runs the addon's tests."""
    parser = argparse.ArgumentParser(prog="python3 -m tests.odoo.kit")
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="build the wheel into a venv layered on ODOO_PY")
    prepare.add_argument("work", type=Path)
    tests = sub.add_parser("addon-tests", help="the addon's tests with Odoo's runner")
    tests.add_argument("--work", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            args.work.mkdir(parents=True, exist_ok=True)
            print(f"OWE_ODOO_PY={prepare_kit(args.work)}")
            return 0
        work = args.work or Path(tempfile.mkdtemp(prefix="owe-"))
        report = run_addon_tests(OdooKit.from_env(work))
    except KitError as err:
        print(f"odoo-test: {err}", file=sys.stderr)
        return 1
    if not report.ok:
        for line in report.error_lines[:50]:
            print(f"odoo-test:   {line}", file=sys.stderr)
        print("odoo-test: the addon's tests FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
