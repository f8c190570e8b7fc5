"""What the benchmark runners share: finding the daemond to measure.

The runners are scripts (``python bench/echo_bench.py``), so this module is
imported from the script's own directory.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_daemond(explicit: str | None = None) -> str | None:
    """``explicit`` if it names a command that exists; else the daemond installed next to this
    Python (the venv the runner was started with), else the one on PATH; None if none is found."""
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    beside = Path(sys.executable).parent / "daemond"
    if beside.exists():
        return str(beside)
    return shutil.which("daemond")
