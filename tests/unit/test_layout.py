"""The package's layout: docs/ARCHITECTURE.md's tree matches it, sizes stay readable, layers hold.

Static checks of the source files (ast and text): nothing is imported or run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "iot_bridge"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 450
# Lines at this indent or deeper continue the description of the line above.
DESCRIPTION_COLUMN = 20
NAME = re.compile(r"[\w.]+/?")


def modules() -> list[str]:
    """Every .py file of the package, relative to src/iot_bridge."""
    return sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
    )


def tree_entries() -> list[str]:
    """The paths the tree in docs/ARCHITECTURE.md names, relative to src/iot_bridge.

    Folders end with "/"; a line may name several files ("a.py, b.py").
    """
    text = ARCHITECTURE.read_text(encoding="utf-8")
    block = text.split("```\nsrc/iot_bridge/\n", 1)[1].split("```", 1)[0]
    folders: list[str] = []  # the folder at each depth above the current line
    entries: list[str] = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or indent >= DESCRIPTION_COLUMN:
            continue
        assert indent % 2 == 0, f"odd indent in the tree: {line!r}"
        depth = indent // 2 - 1
        names_part = re.split(r" {2,}", line.strip(), maxsplit=1)[0]
        names = [name.strip() for name in names_part.split(",")]
        assert all(NAME.fullmatch(name) for name in names), f"not a name: {line!r}"
        del folders[depth:]
        prefix = "".join(folders)
        entries.extend(prefix + name for name in names)
        if names[0].endswith("/"):
            folders.append(names[0])
    return entries


def test_the_tree_names_every_module() -> None:
    """A module of src/iot_bridge missing from ARCHITECTURE.md's tree fails (a package's
    __init__.py may go unnamed)."""
    named = set(tree_entries())
    missing = [
        module
        for module in modules()
        if module not in named and not module.endswith("/__init__.py")
    ]
    assert missing == [], f"modules not in docs/ARCHITECTURE.md's tree: {missing}"


def test_the_tree_names_nothing_that_does_not_exist() -> None:
    """Every file and folder the tree names exists."""
    gone = [entry for entry in tree_entries() if not (PACKAGE / entry).exists()]
    assert gone == [], f"named in docs/ARCHITECTURE.md's tree but not there: {gone}"


def test_the_tree_reader_reads_nested_folders() -> None:
    """The reader places a file under the folder above it, at any depth."""
    entries = tree_entries()
    assert "service/delivery/worker.py" in entries
    assert "net/mqtt/client.py" in entries
    assert "parsers/tasmota.py" in entries  # from a line naming several files
    assert "bootstrap.py" in entries


@pytest.mark.parametrize("module", modules())
def test_modules_and_classes_stay_readable_in_one_sitting(module: str) -> None:
    """No module over 600 lines, no class over 450 (from its line to its last)."""
    text = (PACKAGE / module).read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module}: {lines} lines"
    big = [
        (node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert big == [], f"{module}: classes over {MAX_CLASS_LINES} lines: {big}"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


# What the service layer may not import: the adapters, the entrypoints, the
# composition root, the protocol code that does I/O, and the libraries behind them.
SERVICE_MAY_NOT_IMPORT = (
    "iot_bridge.adapters",
    "iot_bridge.entrypoints",
    "iot_bridge.bootstrap",
    "iot_bridge.demo",
    "iot_bridge.net.mqtt",
    "iot_bridge.net.http",
    "iot_bridge.net.http1",
    "httpx",
    "h11",
    "mqtt5",
    "sqlite3",
    "starlette",
)


@pytest.mark.parametrize(
    "module",
    [m for m in modules() if m.startswith("service/")],
)
def test_the_service_imports_no_adapter(module: str) -> None:
    """service/ names only ports: no adapter, entrypoint, composition root or network code
    (the pure Prometheus text format of net/prometheus.py is allowed)."""
    imports = _imports(PACKAGE / module)
    bad = sorted(
        name
        for name in imports
        for banned in SERVICE_MAY_NOT_IMPORT
        if name == banned or name.startswith(banned + ".")
    )
    assert bad == [], f"{module} imports {bad}"


def test_the_views_read_types_from_views_types() -> None:
    """No read model imports another only for a type: the shared ones live in views/types.py."""
    for module in ("service/views/state_out.py", "service/views/machines.py"):
        assert "iot_bridge.service.views.board" not in _imports(PACKAGE / module), module


def test_the_status_queries_read_the_write_path_through_protocols() -> None:
    """views/status.py imports no module of the write path, delivery or config push: it
    reads them through the read-only Protocols of views/types.py."""
    write_path = (
        "iot_bridge.service.ingest",
        "iot_bridge.service.delivery",
        "iot_bridge.service.config_push",
        "iot_bridge.service.housekeeping",
    )
    imports = _imports(PACKAGE / "service/views/status.py")
    assert sorted(name for name in imports if name.startswith(write_path)) == []
