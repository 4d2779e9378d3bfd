"""docs/claims.md maps each behaviour sentence of the README and docs/ to the tests that keep it (issue 18).
This keeps the mapping from rotting: every test it names exists (the file, and a test function of that name at
the file's top level), every page it names exists, and every page of the docs has at least one row unless the
table lists it as a page with no behaviour sentence of its own. Parsing only (ast, no imports): milliseconds."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = ROOT / "docs" / "claims.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
ROW = re.compile(r"^\|(?P<claim>.+)\|(?P<page>[^|]+)\|(?P<tests>[^|]+)\|\s*$")


def claim_rows(text: str) -> list[tuple[str, str, str]]:
    """(claim, page, tests cell) of every table row below the header and its |---| line."""
    rows = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match and not set(match["page"].strip()) <= set("-: ") and match["page"].strip() != "doc page":
            rows.append((match["claim"].strip(), match["page"].strip(), match["tests"].strip()))
    return rows


def documented_pages() -> set[str]:
    """README.md and every page under docs/ (docs/device/ holds raw logs, claims.md is this table), relative to
    docs/ as the table names them (README.md is the project's landing page)."""
    pages = {"README.md"}
    for path in (ROOT / "docs").rglob("*.md"):
        relative = path.relative_to(ROOT / "docs").as_posix()
        if not relative.startswith("device/") and relative != "claims.md":
            pages.add("docs/README.md" if relative == "README.md" else relative)
    return pages


@cache
def defined_tests(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return frozenset(node.name for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"))


def missing_tests(cell: str) -> list[str]:
    missing = []
    for path, name in TEST_REF.findall(cell):
        if not (ROOT / path).is_file():
            missing.append(f"{path} (no such file)")
        elif name not in defined_tests(path):
            missing.append(f"{path}::{name} (no such test)")
    return missing


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str, str]]:
    return claim_rows(CLAIMS.read_text(encoding="utf-8"))


def test_every_row_names_at_least_one_test_and_each_exists(rows):
    assert len(rows) >= 50
    problems = []
    for claim, page, cell in rows:
        if not TEST_REF.search(cell):
            problems.append(f"{claim!r}: no `tests/...py::test_name` in its test column")
        problems += [f"{claim!r}: {missing}" for missing in missing_tests(cell)]
    assert not problems, "\n".join(problems)


def test_every_page_named_exists_and_every_page_has_a_row(rows):
    pages = documented_pages()
    named = {page for _, page, _ in rows}
    assert not named - pages, f"rows name pages that do not exist: {sorted(named - pages)}"
    exempt = set(re.findall(r"`(docs/[\w/.-]+\.md)`", CLAIMS.read_text(encoding="utf-8").split(
        "Pages with no behaviour sentence of their own:")[-1]))
    assert not exempt & named, f"listed as having no behaviour sentence, yet with rows: {sorted(exempt & named)}"
    without = pages - named - exempt
    assert not without, f"pages with no row in docs/claims.md: {sorted(without)}"


def test_the_docs_index_and_the_testing_page_link_the_table():
    for page in ("README.md", "testing.md"):
        assert "](claims.md)" in (ROOT / "docs" / page).read_text(encoding="utf-8"), page


def test_the_checks_catch_a_renamed_test_and_a_page_without_rows():
    """The parser and the lookups fail on what they must fail on (a check that cannot fail keeps nothing)."""
    table = ("| claim | doc page | test |\n|---|---|---|\n"
             "| x | README.md | `tests/unit/test_claims_doc.py::test_no_such_name` |\n"
             "| y | workshop.md | `tests/unit/no_such_file.py::test_a` |\n"
             "| z | api.md | `tests/unit/test_claims_doc.py::claim_rows` |\n")
    parsed = claim_rows(table)
    assert [page for _, page, _ in parsed] == ["README.md", "workshop.md", "api.md"]
    assert missing_tests(parsed[0][2]) == ["tests/unit/test_claims_doc.py::test_no_such_name (no such test)"]
    assert missing_tests(parsed[1][2]) == ["tests/unit/no_such_file.py (no such file)"]
    assert not TEST_REF.search(parsed[2][2])  # a helper is not a test
    assert {"README.md", "docs/README.md", "workshop.md", "tabs/rag.md"} <= documented_pages()
    assert not any(page.startswith("device/") for page in documented_pages())
