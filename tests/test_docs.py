"""The README is the front door and docs/ the site behind it: the site builds strictly, the README
stays small, keeps the two commands CI and newcomers run, and links only to files that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_LIMIT_BYTES = 10_240
TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -q -e ".[test]" && .venv/bin/python -m pytest -q'
)
QUICK_START_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -e . && "
    ".venv/bin/gradcam explain sample_images/shapes --model demo"
)
FIRST_SCREEN_LINES = 60

# [text](target) and ![alt](target), the target up to the first space or closing parenthesis
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


@pytest.mark.slow
def test_mkdocs_builds_the_site_in_strict_mode(tmp_path):
    # No skip when mkdocs is missing: CI installs it with the test extra, and a site that is not
    # built is a site whose dead links nobody sees.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_is_a_small_front_door_with_the_ci_commands_in_the_first_screen():
    size = README.stat().st_size
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move details to docs/ (limit {README_LIMIT_BYTES})"
    lines = README.read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in lines, "the test command CI runs must appear verbatim, on a line of its own"
    assert QUICK_START_COMMAND in lines, "the quick-start command must appear verbatim, on a line of its own"
    first_screen = lines[:FIRST_SCREEN_LINES]
    assert QUICK_START_COMMAND in first_screen and TEST_COMMAND in first_screen


def test_ci_runs_the_readme_test_command():
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_relative_link_in_the_readme_points_to_an_existing_file():
    text = README.read_text(encoding="utf-8")
    targets = MARKDOWN_LINK.findall(text)
    assert targets, "the README links to its docs pages"
    missing = []
    for target in targets:
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not parts.path:  # web links and in-page anchors
            continue
        if not (ROOT / unquote(parts.path)).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    linked = {urlsplit(target).path for target in MARKDOWN_LINK.findall(text)}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md") if page.name != "index.md"}
    assert not pages - linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_the_evaluate_page_shows_the_ci_gate_as_shipped():
    gate = (ROOT / ".ci" / "evaluate").read_text(encoding="utf-8").strip()
    assert gate in (ROOT / "docs" / "evaluate.md").read_text(encoding="utf-8")
