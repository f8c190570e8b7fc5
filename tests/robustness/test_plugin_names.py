"""Issue 19.13: a mistyped plugin name never imports code from the current directory.

A bare name is only an installed entry point; a dotted path comes from the working directory
only with ``plugins_from_working_dir: true``, and under ``--check-config`` only when also given
``--plugins-from-working-dir``. Each planted module writes a marker file if it is ever imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.process import installed

PLANTED = """
open({marker!r}, "w").write("imported")
from daemon import hookimpl

class Plugin:
    @hookimpl
    def daemond_line_received(self, session, line):
        session.ok(line)
        return True
"""


def plant(cwd: Path, module: str) -> Path:
    marker = cwd / f"{module}.imported"
    (cwd / f"{module}.py").write_text(PLANTED.format(marker=str(marker)))
    return marker


def write_config(cwd: Path, plugin: str, **top) -> Path:
    doc = {"state_dir": str(cwd / "state"), "logging": {"file": None},
           "listeners": {"l": {"port": 0, "plugins": [plugin]}}, **top}
    path = cwd / "daemond.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def daemond(cwd: Path, config: Path, *args: str, command=None) -> subprocess.CompletedProcess:
    return subprocess.run([*(command or [installed("daemond")]), "-c", str(config), *args],
                          cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def failed(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    return proc.stderr


@pytest.fixture
def cwd(tmp_path):
    (tmp_path / "state").mkdir(mode=0o700)
    return tmp_path


@pytest.mark.parametrize("args", [["--check-config"], ["--no-console"]])
def test_a_mistyped_bare_name_imports_nothing_from_the_working_directory(cwd, args):
    marker = plant(cwd, "chatt")
    config = write_config(cwd, "chatt", plugins={"chatt": {}})
    stderr = failed(daemond(cwd, config, *args))
    assert "plugin 'chatt': unknown plugin (known: " in stderr
    assert not marker.exists()


def test_a_bare_name_is_never_a_module_even_with_the_setting(cwd):
    marker = plant(cwd, "chatt")
    config = write_config(cwd, "chatt", plugins_from_working_dir=True)
    failed(daemond(cwd, config, "--check-config", "--plugins-from-working-dir"))
    assert not marker.exists()


@pytest.mark.parametrize("command", [None, [sys.executable, "-m", "daemon"]], ids=["daemond", "python -m daemon"])
@pytest.mark.parametrize("args", [["--check-config"], ["--no-console"]])
def test_a_dotted_path_is_not_imported_from_the_working_directory_by_default(cwd, args, command):
    marker = plant(cwd, "localmod")
    config = write_config(cwd, "localmod:Plugin")
    stderr = failed(daemond(cwd, config, *args, command=command))
    assert "the working directory is not searched: set plugins_from_working_dir: true" in stderr
    assert not marker.exists()


def test_check_config_imports_from_the_working_directory_only_when_asked(cwd):
    marker = plant(cwd, "localmod")
    config = write_config(cwd, "localmod:Plugin", plugins_from_working_dir=True)
    stderr = failed(daemond(cwd, config, "--check-config"))
    assert "--check-config imports nothing from the working directory unless given --plugins-from-working-dir" in stderr
    assert not marker.exists()
    proc = daemond(cwd, config, "--check-config", "--plugins-from-working-dir")
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()
