"""The suite's own layout: tests by kind, support code in one place, no test file name twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
KINDS = {"unit", "integration", "system", "robustness"}


def test_every_test_file_is_under_one_kind_and_no_name_is_used_twice():
    files = sorted(TESTS.rglob("test_*.py"))
    assert files
    misplaced = [str(f.relative_to(TESTS)) for f in files if f.parent.parent != TESTS or f.parent.name not in KINDS]
    assert misplaced == []
    twice = [name for name, n in Counter(f.name for f in files).items() if n > 1]
    assert twice == []


def test_support_modules_live_in_tests_support():
    loose = [p.name for p in TESTS.glob("*.py") if p.name not in ("__init__.py", "conftest.py")]
    assert loose == []
    helpers = [str(p.relative_to(TESTS)) for kind in KINDS for p in (TESTS / kind).glob("*.py")
               if not p.name.startswith("test_") and p.name not in ("__init__.py", "conftest.py")]
    assert helpers == []
