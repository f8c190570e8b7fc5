"""The shipped systemd unit, its notify-reload drop-in, and systemd/install.sh."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "daemond.service"
DROPIN = REPO / "systemd" / "notify-reload.conf"
INSTALL_SH = REPO / "systemd" / "install.sh"
UNIT_BIN = "/opt/daemond/venv/bin"

MAX_EXPOSURE = 2.0

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Unit file → {section: {key: [values in order]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"assignment outside a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def make_executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def bin_dir_for_verify(tmp_path: Path) -> Path:
    """A directory holding executable daemond and daemonctl.

    The test venv's bin dir (sys.executable's) once the package is installed
    there; otherwise stand-in scripts, so `verify` can check the rest.
    """
    venv_bin = Path(sys.executable).parent
    if all(os.access(venv_bin / name, os.X_OK) for name in ("daemond", "daemonctl")):
        return venv_bin
    stub_bin = tmp_path / "bin"
    stub_bin.mkdir()
    for name in ("daemond", "daemonctl"):
        make_executable(stub_bin / name)
    return stub_bin


def verify(unit_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit_path)],
        capture_output=True, text=True, timeout=60, cwd=unit_path.parent,
    )


def systemd_version() -> int:
    out = subprocess.run(
        ["systemctl", "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    m = re.match(r"systemd (\d+)", out)
    assert m, out
    return int(m.group(1))


# -- the unit's content ---------------------------------------------------------


def test_unit_commands_and_type():
    s = service()
    assert s["Type"] == ["notify"]
    assert s["ExecStart"] == [
        f"{UNIT_BIN}/daemond -c /etc/daemond/daemond.yaml --no-console"
    ]
    assert s["ExecReload"] == [f"{UNIT_BIN}/daemonctl -c /etc/daemond/daemond.yaml reload"]
    assert s["Restart"] == ["on-failure"]
    assert s["NotifyAccess"] == ["main"]
    assert "WatchdogSec" in s
    # SIGTERM to daemond alone: it ends auth's hashing helper itself, after the logins under way
    assert s["KillMode"] == ["mixed"]


def test_unit_directories_and_user():
    s = service()
    assert s["DynamicUser"] == ["yes"]
    for key in ("RuntimeDirectory", "StateDirectory", "LogsDirectory"):
        assert s[key] == ["daemond"], key


def test_unit_hardening_directives():
    s = service()
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert s.get(key) == [value], key
    assert s["SystemCallFilter"][0] == "@system-service"
    assert "CAP_NET_BIND_SERVICE" not in s.get("AmbientCapabilities", [""])[0]


def test_dropin_switches_to_notify_reload():
    d = parse_unit(DROPIN.read_text())["Service"]
    assert d["Type"] == ["notify-reload"]
    assert d["ReloadSignal"] == ["SIGHUP"]
    assert d["ExecReload"] == [""]  # clears the daemonctl ExecReload=


# -- systemd-analyze -------------------------------------------------------------


@needs_analyze
def test_verify_is_clean(tmp_path):
    bindir = bin_dir_for_verify(tmp_path)
    unit = tmp_path / "daemond.service"
    unit.write_text(UNIT.read_text().replace(UNIT_BIN, str(bindir)))
    result = verify(unit)
    # verify exits 0 on most warnings: the output is what tells
    assert result.stdout + result.stderr == ""
    assert result.returncode == 0


@needs_analyze
def test_verify_reports_missing_executables(tmp_path):
    """Guards the test above: verify does notice a broken ExecStart here."""
    unit = tmp_path / "daemond.service"
    unit.write_text(UNIT.read_text().replace(UNIT_BIN, str(tmp_path / "nowhere")))
    result = verify(unit)
    assert "is not executable" in result.stdout + result.stderr


@needs_analyze
def test_verify_with_notify_reload_dropin(tmp_path):
    bindir = bin_dir_for_verify(tmp_path)
    unit = tmp_path / "daemond.service"
    unit.write_text(UNIT.read_text().replace(UNIT_BIN, str(bindir)))
    (tmp_path / "daemond.service.d").mkdir()
    shutil.copy(DROPIN, tmp_path / "daemond.service.d" / "notify-reload.conf")
    out = verify(unit)
    text = out.stdout + out.stderr
    if systemd_version() >= 253:
        assert text == ""
    else:
        # systemd 252 knows neither: exactly these two are ignored, nothing else
        lines = text.strip().splitlines()
        assert len(lines) == 2, text
        assert "Failed to parse service type, ignoring: notify-reload" in lines[0]
        assert "Unknown key 'ReloadSignal'" in lines[1]


@needs_analyze
@pytest.mark.parametrize("name", ["low-ports.conf", "control-group.conf"])
def test_verify_with_each_shipped_dropin(tmp_path, name):
    bindir = bin_dir_for_verify(tmp_path)
    unit = tmp_path / "daemond.service"
    unit.write_text(UNIT.read_text().replace(UNIT_BIN, str(bindir)))
    (tmp_path / "daemond.service.d").mkdir()
    shutil.copy(REPO / "systemd" / name, tmp_path / "daemond.service.d" / name)
    out = verify(unit)
    assert out.stdout + out.stderr == ""


def test_a_config_the_service_cannot_honour_is_not_restarted_in_a_loop():
    from daemon.core import EXIT_CONFIG

    assert service()["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]


@needs_analyze
def test_security_exposure_at_most_2():
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, cwd=UNIT.parent,
    )
    # e.g. "→ Overall exposure level for daemond.service: 1.4 OK 🙂"
    m = re.search(
        r"Overall exposure level for daemond\.service: (\d+(?:\.\d+)?) (\w+)", result.stdout
    )
    assert m, result.stdout + result.stderr
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout
    assert m.group(2) == "OK"


# -- install.sh ------------------------------------------------------------------

FAKE_PYTHON = """#!/bin/bash
# stands in for python3: only "-m venv DIR" is supported
echo "python $*" >>"$FAKE_LOG"
[[ $1 == -m && $2 == venv ]] || exit 2
mkdir -p "$3/bin"
printf '#!/bin/sh\\nexit 0\\n' >"$3/bin/python"
cat >"$3/bin/pip" <<'EOF'
#!/bin/bash
echo "pip $*" >>"$FAKE_LOG"
bin=$(dirname "$0")
for exe in daemond daemonctl; do printf '#!/bin/sh\\nexit 0\\n' >"$bin/$exe"; chmod +x "$bin/$exe"; done
EOF
chmod +x "$3/bin/python" "$3/bin/pip"
"""

FAKE_SYSTEMCTL = """#!/bin/bash
echo "systemctl $*" >>"$FAKE_LOG"
if [[ $1 == is-active ]]; then [[ -e $FAKE_ACTIVE ]]; exit; fi
exit 0
"""

FAKE_CONFIG = "listeners:\n  - {plugin: echo, host: 127.0.0.1, port: 9090}\n"


@pytest.fixture
def fake_src(tmp_path):
    """A minimal daemond 'clone' with the real unit, docs and install.sh."""
    src = tmp_path / "src"
    (src / "systemd").mkdir(parents=True)
    (src / "etc").mkdir()
    (src / "docs").mkdir()
    (src / "pyproject.toml").write_text("[project]\nname = 'daemond'\n")
    (src / "etc" / "daemond.yaml").write_text(FAKE_CONFIG)
    shutil.copy(UNIT, src / "systemd" / "daemond.service")
    shutil.copy(REPO / "docs" / "operations.md", src / "docs" / "operations.md")
    shutil.copy(INSTALL_SH, src / "systemd" / "install.sh")
    return src


@pytest.fixture
def install_env(tmp_path):
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    make_executable(fakebin / "python3", FAKE_PYTHON)
    make_executable(fakebin / "systemctl", FAKE_SYSTEMCTL)
    root = tmp_path / "root"
    env = {
        **os.environ,
        "PATH": f"{fakebin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "FAKE_ACTIVE": str(tmp_path / "active"),
        "PREFIX": str(root / "opt" / "daemond"),
        "ETC_DIR": str(root / "etc" / "daemond"),
        "SYSTEMD_DIR": str(root / "etc" / "systemd" / "system"),
        "BIN_DIR": str(root / "usr" / "local" / "bin"),
        "ALLOW_NON_ROOT": "1",
    }
    return env


def run_install(env, *args, script=INSTALL_SH):
    return subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=60
    )


def calls(env) -> list[str]:
    log = Path(env["FAKE_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def test_install_sh_syntax():
    subprocess.run(["bash", "-n", str(INSTALL_SH)], check=True, timeout=30)
    head = INSTALL_SH.read_text().splitlines()[:40]
    assert head[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in head
    assert os.access(INSTALL_SH, os.X_OK)


def test_install_is_idempotent_and_keeps_config(fake_src, install_env):
    env = {**install_env, "NO_SYSTEMCTL": "1"}
    prefix = Path(env["PREFIX"])
    etc = Path(env["ETC_DIR"])
    unit = Path(env["SYSTEMD_DIR"]) / "daemond.service"

    first = run_install(env, str(fake_src))
    assert first.returncode == 0, first.stderr
    assert (etc / "daemond.yaml").read_text() == FAKE_CONFIG
    assert (prefix / "docs" / "operations.md").is_file()
    link = Path(env["BIN_DIR"]) / "daemonctl"
    assert link.is_symlink() and os.readlink(link) == str(prefix / "venv/bin/daemonctl")
    installed = unit.read_text()
    assert f"ExecStart={prefix}/venv/bin/daemond -c {etc}/daemond.yaml --no-console" in installed
    assert f"ExecReload={prefix}/venv/bin/daemonctl -c {etc}/daemond.yaml reload" in installed
    rest = installed.replace(str(prefix), "PREFIX").replace(str(etc), "ETC")
    assert "/opt/daemond" not in rest and "/etc/daemond/" not in rest
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert oct((etc / "daemond.yaml").stat().st_mode & 0o777) == "0o644"

    # the operator edits the config; a second run (= upgrade) keeps it
    (etc / "daemond.yaml").write_text("# mine\n")
    second = run_install(env, str(fake_src))
    assert second.returncode == 0, second.stderr
    assert (etc / "daemond.yaml").read_text() == "# mine\n"
    assert "keeping existing" in second.stdout
    assert unit.read_text() == installed

    log = calls(env)
    assert [c for c in log if c.startswith("python")] == [f"python -m venv {prefix}/venv"]
    pips = [c for c in log if c.startswith("pip")]
    assert len(pips) == 2 and all(c.startswith("pip install") and c.endswith(str(fake_src)) for c in pips)
    assert not any(c.startswith("systemctl") for c in log)


@needs_analyze
def test_installed_unit_verifies(fake_src, install_env):
    env = {**install_env, "NO_SYSTEMCTL": "1"}
    assert run_install(env, str(fake_src)).returncode == 0
    result = verify(Path(env["SYSTEMD_DIR"]) / "daemond.service")
    assert result.stdout + result.stderr == ""


def test_install_defaults_to_its_own_clone_and_drives_systemctl(fake_src, install_env):
    env = install_env
    script = fake_src / "systemd" / "install.sh"
    first = run_install(env, script=script)  # no argument: the clone it lives in
    assert first.returncode == 0, first.stderr
    assert any(c == f"pip install --disable-pip-version-check --quiet {fake_src}" for c in calls(env))
    sc = [c for c in calls(env) if c.startswith("systemctl")]
    assert sc[:4] == [
        "systemctl daemon-reload",
        "systemctl enable daemond.service",
        "systemctl is-active --quiet daemond.service",
        "systemctl start daemond.service",
    ]

    Path(env["FAKE_ACTIVE"]).touch()  # now it runs: an upgrade restarts it
    Path(env["FAKE_LOG"]).unlink()
    second = run_install(env, script=script)
    assert second.returncode == 0, second.stderr
    sc = [c for c in calls(env) if c.startswith("systemctl")]
    assert "systemctl restart daemond.service" in sc
    assert "systemctl start daemond.service" not in sc


def test_install_requires_root(fake_src, install_env, tmp_path):
    fake_id = make_executable(tmp_path / "fakebin" / "id", "#!/bin/sh\necho 1000\n")
    env = {k: v for k, v in install_env.items() if k != "ALLOW_NON_ROOT"}
    result = run_install(env, str(fake_src))
    assert result.returncode != 0
    assert "must run as root" in result.stderr
    assert calls(env) == []
    assert not Path(env["PREFIX"]).exists()
    fake_id.unlink()


def test_install_rejects_a_non_clone(tmp_path, install_env):
    result = run_install(install_env, str(tmp_path))
    assert result.returncode != 0
    assert "does not look like a daemond clone" in result.stderr
    assert calls(install_env) == []
