"""Every `docs/...` a shipped file names exists, and a section it names in quotes is a heading there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What an operator or a newcomer reads first and follows: the config, the unit and its drop-ins.
SHIPPED = [ROOT / "etc" / "daemond.yaml", *sorted((ROOT / "systemd").iterdir()), ROOT / "README.md"]
#: docs/NAME or docs/NAME.md, then maybe , "Section title" (across a comment's line break).
REFERENCE = re.compile(r'\bdocs/([\w.-]+?)(\.md)?\b(?:\)|,\s*(?:#\s*)?"([^"]+)")?')


def references(path: Path) -> list[tuple[str, str | None]]:
    text = path.read_text()
    return [(name + (md or ""), " ".join(title.replace("#", " ").split()) if title else None)
            for name, md, title in REFERENCE.findall(text)]


def headings(doc: Path) -> set[str]:
    return {line.lstrip("#").strip().strip('"') for line in doc.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_docs_and_sections_exist(path):
    for name, title in references(path):
        doc = ROOT / "docs" / name
        assert name.endswith(".md") and doc.is_file(), f"{path.name} names docs/{name}, which does not exist"
        if title:
            assert title in headings(doc), f"{path.name} names section {title!r} of docs/{name}: no such heading"


def test_the_checker_sees_a_broken_reference(tmp_path):
    bad = tmp_path / "daemond.yaml"
    bad.write_text('# see docs/reload, and docs/configuration.md,\n# "Reloading a\n# running daemon"\n')
    assert references(bad) == [("reload", None), ("configuration.md", "Reloading a running daemon")]


def test_the_readme_says_how_to_run_what_the_default_run_leaves_out_and_where_nc_comes_from():
    import tomllib

    readme = (ROOT / "README.md").read_text()
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = [line.split(":")[0] for line in pytest_ini["markers"]]
    for marker in markers:
        assert f"not {marker}" in pytest_ini["addopts"], marker  # left out of the default run...
        assert f"python -m pytest -m {marker}" in readme, marker  # ...and the README says how to run it
    assert "tests/system/test_pid1.py" in readme and (ROOT / "tests/system/test_pid1.py").is_file()
    assert "apt-get install netcat-openbsd" in readme
    assert re.search(r"whole suite takes several minutes", readme)
