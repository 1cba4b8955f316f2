"""The documents point at files that exist: a page moved or renamed breaks a test, not a reader's click."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md")])


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file(document):
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text())
    broken = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))
              and not (document.parent / t).exists()]
    assert broken == []


def test_the_readme_says_how_to_install_into_your_own_postgresql_and_links_every_page():
    readme = (REPO / "README.md").read_text()
    assert "pgalert migrate" in readme and "pip install" in readme and "make demo" in readme and "make test" in readme
    pages = {p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md")} - {"docs/README.md"}
    assert {p for p in pages if f"]({p})" not in readme} == set()
