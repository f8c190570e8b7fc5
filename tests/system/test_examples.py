"""The plugin author's path, tested: the tutorial's code is the example's code, and the example
installs from a wheel into a fresh virtual environment and runs under the installed commands."""

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from daemon.testing import LineClient

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "daemond-rot13"


def test_every_tutorial_code_block_is_a_tested_file():
    text = (REPO / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", text, re.S)
    assert len(blocks) >= 4
    for path, body in blocks:
        assert (REPO / path).read_text() == body, f"docs/tutorial.md's copy of {path} differs from the file"
    # every file of the example's code is shown
    shown = {p for p, _ in blocks}
    for f in ("pyproject.toml", "src/daemond_rot13/__init__.py", "tests/test_rot13.py", "daemond.yaml"):
        assert f"examples/daemond-rot13/{f}" in shown


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def author_venv(tmp_path_factory):
    """A fresh venv with daemond and the example plugin installed from a wheel, as an author would."""
    base = tmp_path_factory.mktemp("author")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run(pip + ["wheel", "--no-deps", "-w", str(base / "dist"), str(EXAMPLE)])
    (wheel,) = (base / "dist").glob("daemond_rot13-*.whl")
    run(pip + ["install", str(REPO), str(wheel), "pytest"])
    return venv


def test_the_example_plugin_from_a_wheel_in_a_fresh_venv(author_venv, tmp_path):
    bin_dir = author_venv / "bin"
    # the plugin's own tests pass there (daemond's pytest fixture comes with daemond)
    shutil.copytree(EXAMPLE / "tests", tmp_path / "plugin_tests")
    run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "plugin_tests")],
        cwd=tmp_path)

    config = yaml.safe_load((EXAMPLE / "daemond.yaml").read_text())
    config["listeners"]["rot"]["port"] = 0
    config["state_dir"] = str(tmp_path / "state")
    path = tmp_path / "daemond.yaml"
    path.write_text(yaml.safe_dump(config))
    run([str(bin_dir / "daemond"), "--check-config", "-c", str(path)])

    log = open(tmp_path / "daemond.out", "wb")
    proc = subprocess.Popen([str(bin_dir / "daemond"), "-c", str(path), "--no-console"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        port = _wait_port(tmp_path / "daemond.out", "rot", proc)
        with LineClient("127.0.0.1", port) as c:
            assert c.read_line() == "+OK rot13 ready"
            assert c.command("Hello, World!")[1] == "+OK Uryyb, Jbeyq!"
        stats = run([str(bin_dir / "daemonctl"), "-c", str(path), "--json", "rot13-stats"], cwd=tmp_path)
        assert '"lines": 1' in stats.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        log.close()


def test_a_quick_local_plugin_by_dotted_path(daemond_process, tmp_path, monkeypatch):
    """No package at all: a module in the directory daemond starts from, when the config says so."""
    (tmp_path / "myshout.py").write_text(
        "from daemon import hookimpl\n\n"
        "class Shout:\n"
        "    @hookimpl\n"
        "    def daemond_line_received(self, session, line):\n"
        "        session.ok(line.upper())\n"
        "        return True\n")
    monkeypatch.chdir(tmp_path)
    proc = daemond_process({"s": {"plugins": ["myshout:Shout"]}}, plugins_from_working_dir=True)
    with proc.client("s") as c:
        assert c.command("quiet")[1] == "+OK QUIET"
    assert proc.terminate() == 0


def _wait_port(log_path: Path, listener: str, proc, timeout=20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(rf"listening on \S+:(\d+) \({listener}\)", log_path.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise AssertionError(log_path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"not listening:\n{log_path.read_text()}")
