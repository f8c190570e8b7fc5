"""The drop-ins ship as files in systemd/; docs/operations.md quotes them exactly, and the unit's
header points to the files rather than spelling a drop-in of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
DROPINS = ["low-ports.conf", "control-group.conf"]


def service_section(path: Path) -> str:
    """The file from its [Service] line on: what the docs show."""
    text = path.read_text()
    return text[text.index("[Service]"):].strip()


def ini_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```ini\n(.*?)^```", text, re.M | re.S)]


@pytest.mark.parametrize("name", DROPINS)
def test_operations_quotes_each_dropin_as_the_file_says_and_installs_the_file(name):
    assert service_section(ROOT / "systemd" / name) in ini_blocks(OPERATIONS)
    assert f"/usr/local/src/daemond/systemd/{name} \\\n    /etc/systemd/system/daemond.service.d/{name}" in OPERATIONS


def test_the_units_header_names_the_dropin_files_and_spells_none():
    unit = (ROOT / "systemd" / "daemond.service").read_text()
    top = unit[: unit.index("[Unit]")]
    assert "[Service]" not in top and "AmbientCapabilities" not in top, top
    for name in DROPINS:
        assert f"systemd/{name}" in top


def test_a_quoted_dropin_that_drifted_from_its_file_is_seen():
    drifted = OPERATIONS.replace("PrivateUsers=no\n```", "```", 1)
    assert service_section(ROOT / "systemd" / "low-ports.conf") not in ini_blocks(drifted)


def test_cap_sys_nice_is_never_advised_without_saying_it_needs_privateusers_off():
    for path in (ROOT / "docs" / "operations.md", ROOT / "docs" / "configuration.md", ROOT / "etc" / "daemond.yaml"):
        for paragraph in re.split(r"\n\s*#?\s*\n", path.read_text()):
            if "CAP_SYS_NICE" in paragraph:
                assert "PrivateUsers" in paragraph, (path.name, paragraph)
