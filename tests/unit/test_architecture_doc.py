"""docs/architecture.md describes the code as built: every module of lanectl/ is in its layout, and the README
links it (not a page outside the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
MODULES = sorted(p for p in (REPO / "lanectl").rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_is_in_the_layout(path: Path):
    layout = DOC.read_text(encoding="utf-8").split("## Rules")[0]
    assert re.search(rf"(?<![\w.]){re.escape(path.name)}", layout), \
        f"{path.relative_to(REPO)} is missing from the layout in docs/architecture.md: add it"


def test_every_package_is_in_the_layout():
    layout = DOC.read_text(encoding="utf-8").split("## Rules")[0]
    for package in sorted(p.parent for p in (REPO / "lanectl").rglob("__init__.py")):
        if package.name != "lanectl":
            assert f"{package.name}/" in layout, f"package {package.relative_to(REPO)} missing from the layout"


def test_readme_links_the_page_inside_the_repository():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme
    assert "../shared" not in readme
    for link in re.findall(r"\]\(([^)#]+)", readme):  # relative links resolve inside the checkout
        if not link.startswith(("http://", "https://")):
            assert (REPO / link).exists(), f"README links {link}, which is not in the repository"
