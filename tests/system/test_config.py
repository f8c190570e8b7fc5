"""Config validation: every problem at once, as FILE:LINE:COL: message."""

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from daemon.config import ConfigError, find_config, load_config
from daemon.loader import PluginLoader
from tests.support.process import installed

REPO = Path(__file__).resolve().parents[2]


def check(tmp_path, text):
    path = tmp_path / "d.yaml"
    path.write_text(textwrap.dedent(text))
    return path, subprocess.run([installed("daemond"), "--check-config", "-c", str(path)],
                                capture_output=True, text=True, timeout=30)


def test_shipped_config_is_valid():
    proc = subprocess.run([installed("daemond"), "--check-config", "-c", str(REPO / "etc" / "daemond.yaml")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_every_problem_reported_with_its_position(tmp_path):
    path, proc = check(tmp_path, """\
        listeners:
          echo:
            host: 127.0.0.1
            port: 70000
            plugins: [echo, nosuchplugin]
            max_conections: 5
          other:
            port: "9091"
            plugins: echo
        bogus: 1
        logging:
          level: loud
        """)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    expected = [
        f"{path}:4:11: listeners.echo.port: must be at most 65535, not 70000",
        f"{path}:5:21: plugin 'nosuchplugin': unknown plugin",
        f"{path}:6:5: listeners.echo: unknown key 'max_conections'",
        f"{path}:8:11: listeners.other.port: must be an integer, not '9091' (a string)",
        f"{path}:9:14: listeners.other.plugins: must be a list, not 'echo' (a string)",
        f"{path}:10:1: unknown key 'bogus'",
        f"{path}:12:10: logging.level: must be one of debug, info, warning, error, critical, not 'loud'",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, proc.stderr)
    assert "Traceback" not in proc.stderr


def test_yaml_syntax_error_has_a_position(tmp_path):
    path, proc = check(tmp_path, """\
        listeners:
          echo: {port: 1, plugins: [echo]
        """)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{path}:3:1: YAML syntax error"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_yaml_syntax_error_also_says_where_the_unclosed_construct_started(tmp_path):
    path, proc = check(tmp_path, """\
        listeners:
          echo:
            port: 1
            plugins: [echo, auth
            host: 127.0.0.1
        """)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"{path}:5:9: YAML syntax error: did not find expected ',' or ']' "
        "(in the flow sequence that starts at line 4, column 14)"), proc.stderr
    path, proc = check(tmp_path, """\
        listeners:
          echo: {port: 1, plugins: [echo]
        """)
    assert proc.stderr.splitlines()[0] == (
        f"{path}:3:1: YAML syntax error: did not find expected ',' or '}}' "
        "(in the flow mapping that starts at line 2, column 9)"), proc.stderr
    path, proc = check(tmp_path, """\
        logging:
          file: "daemond.log
        """)
    assert proc.stderr.splitlines()[0] == (
        f"{path}:3:1: YAML syntax error: found unexpected end of stream "
        "(in the quoted scalar that starts at line 2, column 9)"), proc.stderr


def test_logging_level_in_any_case(tmp_path):
    for given in ("INFO", "Debug", "warning", "CRITICAL"):
        path, proc = check(tmp_path, f"""\
            listeners:
              echo: {{port: 0, plugins: [echo]}}
            logging:
              level: {given}
            """)
        assert proc.returncode == 0, (given, proc.stderr)
        assert load_config(path, PluginLoader()).logging.level == given.lower()
    path, proc = check(tmp_path, """\
        listeners:
          echo: {port: 0, plugins: [echo]}
        logging:
          level: LOUD
        """)
    assert proc.returncode == 1
    assert f"{path}:4:10: logging.level: must be one of debug, info, warning, error, critical, not 'LOUD'" in proc.stderr


def test_a_plugins_section_naming_a_plugin_nothing_loads_is_an_error(tmp_path):
    path, proc = check(tmp_path, """\
        listeners:
          x: {port: 0, plugins: [echo]}
        plugins:
          echo: {}
          nosuchplugin: {colour: red}
        """)
    assert proc.returncode == 1
    assert re.search(rf"^{re.escape(str(path))}:5:3: plugin 'nosuchplugin': unknown plugin \(known: [^)]*\bchat\b[^)]*\becho\b",
                     proc.stderr, re.MULTILINE), proc.stderr
    assert "Traceback" not in proc.stderr


def test_duplicate_keys_are_errors(tmp_path):
    path, proc = check(tmp_path, """\
        listeners:
          echo: {port: 1, plugins: [echo]}
          echo: {port: 2, plugins: [echo]}
        """)
    assert proc.returncode == 1
    assert f"{path}:3:3: duplicate key 'echo' (first at line 2)" in proc.stderr


def test_empty_and_missing_and_unreadable(tmp_path):
    path, proc = check(tmp_path, "")
    assert proc.returncode == 1 and "config is empty" in proc.stderr
    proc = subprocess.run([installed("daemond"), "--check-config", "-c", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == f"{tmp_path / 'nope.yaml'}: config file not found"
    proc = subprocess.run([installed("daemond"), "-c", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "cannot read config file" in proc.stderr and "Traceback" not in proc.stderr


def test_same_address_twice(tmp_path):
    path, proc = check(tmp_path, """\
        listeners:
          a: {port: 5555, plugins: [echo]}
          b: {port: 5555, plugins: [echo]}
        """)
    assert proc.returncode == 1
    assert "127.0.0.1:5555 is already used by listener 'a'" in proc.stderr


def test_plugin_settings_validated_by_its_schema(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text(textwrap.dedent("""\
        listeners:
          x: {port: 0, plugins: [tests.plugins.withsettings]}
        plugins:
          tests.plugins.withsettings:
            times: 9
            colour: red
        """))
    with pytest.raises(ConfigError) as info:
        load_config(path, PluginLoader())
    messages = [str(p) for p in info.value.problems]
    assert f"{path}:5:12: plugins.tests.plugins.withsettings.times: must be at most 5, not 9" in messages
    assert any(m.startswith(f"{path}:6:5: plugins.tests.plugins.withsettings: unknown key 'colour'") for m in messages)


def test_plugin_without_settings_rejects_a_section(tmp_path):
    path, proc = check(tmp_path, """\
        listeners:
          x: {port: 0, plugins: [echo]}
        plugins:
          echo: {speed: 3}
        """)
    assert proc.returncode == 1
    assert f"{path}:4:9: plugins.echo: this plugin takes no settings" in proc.stderr


def test_defaults_and_state_dir(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("listeners:\n  e: {port: 0, plugins: [echo]}\n")
    cfg = load_config(path, PluginLoader(), environ={"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert cfg.state_dir == tmp_path / "xdg" / "daemond"
    assert cfg.log_file == cfg.state_dir / "daemond.log"
    assert cfg.listeners["e"].max_connections == 1000
    cfg = load_config(path, PluginLoader(), environ={"STATE_DIRECTORY": "/var/lib/daemond", "LOGS_DIRECTORY": "/var/log/daemond",
                                                     "RUNTIME_DIRECTORY": "/run/daemond"})
    assert cfg.state_dir == Path("/var/lib/daemond")
    assert cfg.log_file == Path("/var/log/daemond/daemond.log")
    assert cfg.control_socket == Path("/run/daemond/control.sock")
    path.write_text("state_dir: here\nlisteners:\n  e: {port: 0, plugins: [echo]}\n")
    assert load_config(path, PluginLoader(), environ={}).state_dir == tmp_path / "here"


def test_config_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        find_config(None, environ={})
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "daemond.yaml").write_text("x")
    assert find_config(None, environ={}) == Path("etc/daemond.yaml")
    assert find_config(None, environ={"DAEMOND_CONFIG": "/a.yaml"}) == Path("/a.yaml")
    assert find_config("/b.yaml", environ={"DAEMOND_CONFIG": "/a.yaml"}) == Path("/b.yaml")


def test_the_digest_is_of_the_file_bytes_as_the_reloader_hashes_them(tmp_path):
    # A config saved with CRLF line endings must not look changed to the reloader at every start.
    import hashlib

    path = tmp_path / "daemond.yaml"
    path.write_bytes(b"state_dir: state\r\nlisteners:\r\n  e: {port: 0, plugins: [echo]}\r\n")
    config = load_config(path, PluginLoader())
    assert config.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert config.listeners["e"].plugins == ("echo",)


def test_no_config_found_is_said_with_daemonds_prefix(tmp_path):
    if Path("/etc/daemond/daemond.yaml").exists():
        pytest.skip("/etc/daemond/daemond.yaml exists here: daemond would find it")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([installed("daemond")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.startswith("daemond: no config file found (tried $DAEMOND_CONFIG, "), proc.stderr
