"""The README and docs/ stay what issue 18 made them: a short README in the user's order whose
links all lead somewhere, and pages whose commands `scripts/readme_fresh_venv.py` can find.

Running those commands takes minutes (a fresh venv, the test suite), so it is not part of the
default pytest run: `python scripts/readme_fresh_venv.py --quick` does it.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: Pages other issues are writing, linked before they land (none now: every page exists).
PENDING: set[str] = set()
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


@functools.cache
def _fresh_venv_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "readme_fresh_venv", ROOT / "scripts/readme_fresh_venv.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_readme_is_short() -> None:
    assert len(README.read_bytes()) < 12_000


def test_readme_sections_in_the_users_order() -> None:
    headings = re.findall(r"^## (.+)$", FENCE.sub("", README.read_text()), re.M)
    wanted = ["Why", "Set-up", "Recording", "Reading", "Running it for months", "Migrating"]
    found = [next(i for i, h in enumerate(headings) if h.startswith(w)) for w in wanted]
    assert found == sorted(found), headings


def test_the_ci_runs_the_readmes_test_command_verbatim() -> None:
    command = "pip install -e '.[test]' && pytest"
    assert f"```bash\n# 2. install with the test tools and run the tests\n{command}\n```" in (
        README.read_text()
    )
    assert (ROOT / ".ci/run").read_text().rstrip().splitlines()[-1] == command
    assert "pip install . && bmac-trio demo" in _fresh_venv_script().bash_lines(README.read_text())


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_every_link_leads_somewhere(page: Path) -> None:
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            assert linked.parent == DOCS, f"{page.name}: {target}"
            assert linked.name in PENDING, f"{page.name}: {target}"
            continue
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: no heading for {target}"


def test_the_docs_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    listed = set(LINK.findall(index))
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert page.name in listed, f"add a line for {page.name} to the table of docs/README.md"
    assert listed >= PENDING


def test_the_script_reads_every_page_and_its_skip_marks() -> None:
    script = _fresh_venv_script()
    pages = [p.relative_to(ROOT).as_posix() for p in script.pages(ROOT)]
    assert pages[0] == "README.md"
    assert {p.relative_to(ROOT).as_posix() for p in DOCS.glob("*.md")} <= set(pages)
    text = (
        "```bash\necho a  # kept\n# dropped\n```\n\n"
        "<!-- fresh-venv: quick-skip takes an hour -->\n```bash\nlong run\n```\n"
        "<!-- fresh-venv: skip needs a GPU -->\n\n```bash\ngpu run\n```\n"
    )
    blocks = script.bash_blocks(text, "x.md")
    assert [(b.lines, b.mark, b.reason) for b in blocks] == [
        (("echo a  # kept",), "", ""),
        (("long run",), "quick-skip", "takes an hour"),
        (("gpu run",), "skip", "needs a GPU"),
    ]
