"""docs/reliability.md's promises name tests that exist, and it and its measurement log link each other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMISES = ROOT / "docs" / "reliability.md"
LOG = ROOT / "bench" / "README-reliability.md"


def case_rows() -> list[list[str]]:
    rows = []
    for line in PROMISES.read_text().splitlines():
        if re.match(r"\| \d+ \|", line):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


def test_every_case_names_a_test_that_exists():
    rows = case_rows()
    assert len(rows) >= 24
    for number, case, _promise, _bound, test_cell in rows:
        named = re.findall(r"`([^`]+\.py(?:::\w+)?)`", test_cell)
        assert named, f"case {number} ({case}) names no test"
        for ref in named:
            path, _, name = ref.partition("::")
            file = ROOT / path if "/" in path else ROOT / "tests" / "robustness" / path
            assert file.is_file(), f"case {number}: {file} does not exist"
            if name:
                assert re.search(rf"^def {name}\(", file.read_text(), re.MULTILINE), f"case {number}: no {ref}"


def test_the_promises_and_the_measurement_log_link_each_other_and_share_the_cases():
    assert "](../bench/README-reliability.md)" in PROMISES.read_text()
    log = LOG.read_text()
    assert "](../docs/reliability.md)" in log
    table = log.split("## Last result per case", 1)[1].split("\n## ", 1)[0]
    measured = re.findall(r"^\| (\d+) \| ([^|]+) \|", table, re.MULTILINE)
    assert [(n, c.strip()) for n, c in measured] == [(r[0], r[1]) for r in case_rows()]
