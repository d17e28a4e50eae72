"""docs/CONTRACT.md is the one contract the code cites: every citation names a section of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CONTRACT = ROOT / "docs" / "CONTRACT.md"
# The outside contract the project was given, beside the worktree (CI has it).
GIVEN = ROOT.parent / "shared" / "CONTRACT.md"
SCANNED = ("src", "tests", "docs", "odoo_addons", "benchmarks", "scripts", "README.md")
SUFFIXES = {".py", ".md", ".xml", ".js", ".html", ".txt", ".rst", ".csv", ".toml", ""}

_HEADING = re.compile(r"^#{2,3} (\d+[a-z]?(?:\.\d+)?)\.? ", re.MULTILINE)
_REF = r"§?\d+[a-z]?(?:\.\d+)?"
# "CONTRACT §6", "CONTRACT section 4a", "CONTRACT sections 2, 4 and 6", "contract §9".
_CITATION = re.compile(
    rf"\b(?:CONTRACT|[Cc]ontract)(?: sections?| §| ?§)? ?({_REF}(?:(?:, | and |, and ){_REF})*)"
)
_NUMBER = re.compile(r"\d+[a-z]?(?:\.\d+)?")


def sections(text: str) -> set[str]:
    """The section numbers of a contract file's headings (``4a``, ``6``, ``6.1``)."""
    return set(_HEADING.findall(text))


def headings(text: str) -> list[str]:
    """The numbered section headings, as written."""
    return [line for line in text.splitlines() if _HEADING.match(line + " ")]


def cited(text: str) -> set[str]:
    """The section numbers a text cites as the contract's."""
    found: set[str] = set()
    for match in _CITATION.finditer(text):
        found.update(_NUMBER.findall(match.group(1)))
    return found


def citations() -> list[tuple[str, str]]:
    """(file, section) for every contract citation in the project's files."""
    found = []
    for top in SCANNED:
        base = ROOT / top
        paths = [base] if base.is_file() else sorted(base.rglob("*"))
        for path in paths:
            if not path.is_file() or path.suffix not in SUFFIXES or "__pycache__" in path.parts:
                continue
            if path == Path(__file__):
                continue  # its examples are not citations
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            name = str(path.relative_to(ROOT))
            found += [(name, section) for section in sorted(cited(text))]
    # Inside the contract itself a bare "§N" is a citation of its own section.
    own = CONTRACT.read_text(encoding="utf-8")
    found += [("docs/CONTRACT.md", section) for section in re.findall(r"§(\d+[a-z]?)", own)]
    return found


def test_the_citation_pattern_reads_every_form() -> None:
    """Each way the code cites the contract gives the section numbers it names."""
    assert cited("see CONTRACT §4a.") == {"4a"}
    assert cited("(CONTRACT sections 2, 4 and 6)") == {"2", "4", "6"}
    assert cited("CONTRACT section 6.") == {"6"}
    assert cited("CONTRACT §2, §6") == {"2", "6"}
    assert cited("CONTRACT 6's batch") == {"6"}
    assert cited("contract §9's") == {"9"}
    assert cited("CONTRACT §6.2 says") == {"6.2"}
    assert cited("docs/CONTRACT.md and CONTRACT/issue 22") == set()


def test_the_project_cites_the_contract() -> None:
    """The scan finds the citations (a broken scan would pass the next test vacuously)."""
    assert len({name for name, _ in citations()}) >= 30


def test_every_citation_names_a_section_of_docs_contract() -> None:
    """No file cites a section number that docs/CONTRACT.md does not have."""
    known = sections(CONTRACT.read_text(encoding="utf-8"))
    unknown = [f"{name}: §{section}" for name, section in citations() if section not in known]
    assert unknown == []


def test_docs_contract_keeps_the_given_sections() -> None:
    """Every numbered heading of the given contract is in docs/CONTRACT.md, word for word."""
    if not GIVEN.is_file():
        pytest.skip(f"{GIVEN} is not here")
    ours = headings(CONTRACT.read_text(encoding="utf-8"))
    given = headings(GIVEN.read_text(encoding="utf-8"))
    assert given, "the given contract has numbered headings"
    assert [heading for heading in given if heading not in ours] == []
    assert sections("\n".join(ours)) >= sections("\n".join(given))
