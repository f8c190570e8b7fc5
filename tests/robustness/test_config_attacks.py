"""Issue 19 items 5 and 6: nothing a config file holds kills the reload thread or the check.

Expected outcome: a config is either accepted or refused with one-line reasons, each
``FILE:LINE:COL: message`` (or ``FILE: message`` for the file as a whole); ``daemond
--check-config`` exits 1 without a traceback; a running daemon refuses the reload and keeps
its reload thread, its watchdog pings and its last good config, and the next good edit applies.
Bounds: aliases may expand a document to :data:`daemon.yamlsource.MAX_VALUES` (100,000) values,
mappings and lists nest :data:`~daemon.yamlsource.MAX_DEPTH` (100) deep, the file is at most
:data:`daemon.config.MAX_CONFIG_BYTES` (1 MiB), every number in a setting is finite. The
fuzzers are bounded by ``max_examples``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import re
import resource
import subprocess
import time
from dataclasses import fields, is_dataclass

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from daemon import cli
from daemon.config import MAX_CONFIG_BYTES, Config, ConfigError, load_config
from daemon.loader import PluginLoader
from daemon.yamlsource import MAX_VALUES
from tests.support.notify import Receiver
from tests.support.process import installed
from tests.support.robustness import MIB, wait_until

SKELETON = "listeners:\n  echo:\n    port: 0\n    plugins: [echo]\n"


def laughs(levels: int, fan_out: int = 10) -> str:
    """Billion laughs under a plugin's section: each level is ``fan_out`` aliases of the one before."""
    lines = [SKELETON, "plugins:\n  lol:\n", f"    a0: &a0 [{', '.join(['lol'] * fan_out)}]\n"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan_out)}]\n" for i in range(1, levels + 1)]
    return "".join(lines)


#: files that broke the reload thread or the check, by name; the mark each problem must stand at
ATTACKS = {
    "alias-to-itself": (SKELETON + "plugins:\n  echo: &a [*a]\n", "6:9"),
    "mapping-alias-to-itself": ("listeners:\n  echo: &l\n    port: 0\n    plugins: [echo]\n    me: *l\n", "2:9"),
    "nan-timeout": (SKELETON + "    idle_timeout: .nan\n", "5:19"),
    "inf-timeout": (SKELETON + "    idle_timeout: .inf\n", "5:19"),
    "nan-switch-interval": (SKELETON + "tuning:\n  switch_interval: .nan\n", "6:20"),
    "nan-debounce": (SKELETON + "reload:\n  debounce: .NaN\n", "6:13"),
    "nan-in-plugin-setting": ("listeners:\n  chat:\n    port: 0\n    plugins: [chat]\n"
                              "plugins:\n  chat:\n    rate: .nan\n", "7:11"),
    "int-beyond-float": (SKELETON + "    idle_timeout: 1" + "0" * 400 + "\n", "5:19"),
    "5000-digit-int": (SKELETON + "    max_line: " + "9" * 5000 + "\n", "5:15"),
    "wide-hex-int": (SKELETON + "    max_line: 0x" + "f" * 1100 + "\n", "5:15"),
    "impossible-date": (SKELETON + "    host: 2001-13-45\n", "5:11"),
    "float-tag-on-text": (SKELETON + "    idle_timeout: !!float abc\n", "5:19"),
    "nested-990-deep": (SKELETON + "plugins:\n  echo: " + "[" * 990 + "]" * 990 + "\n", "6:"),
    "billion-laughs": (laughs(7), "10:9"),
}

_PROBLEM = re.compile(r"(?P<file>.+?):(?:(?P<line>\d+):(?P<col>\d+):)? \S")


def assert_one_line_problems(problems: list[str], path) -> None:
    assert problems
    for line in problems:
        assert "\n" not in line and "Traceback" not in line, line
        match = _PROBLEM.match(line)
        assert match and match.group("file") == str(path), line


def assert_finite(config: Config) -> None:
    """Every number an accepted config holds is a real one."""
    def walk(value):
        if is_dataclass(value):
            for f in fields(value):
                walk(getattr(value, f.name))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, float):
            assert math.isfinite(value)
    for part in (config.listeners, config.plugin_settings, config.logging, config.reload, config.tuning):
        walk(part)


# -- generated YAML-ish documents ------------------------------------------------------------

ODD_SCALARS = [".nan", ".NaN", ".inf", "-.inf", "1e400", "-1e400", "1" + "0" * 400, "9" * 5000, "0x" + "f" * 1100,
               "0o777", "190:20:30", "1_000", "2001-13-45", "2001-12-14t21:59:43.10-05:00", "~", "null", "yes",
               "''", '"\\u0000"', '"a\\x85b"', "!!binary '@@'", "!!binary aGk=", "!!float x", "!!int 1.5",
               "!!timestamp x", "!!python/object:os.system {}", "!!python/name:os.system", "!!set {a, b}",
               "!!omap [a: 1]", "!custom 3", "!!str 5", "!!null x", "!!bool maybe", "<<", "=", "-1", "0", "1.5",
               "70000", "echo", "[echo]", "{}", "[]", "?", "&", "*", "!", "|", ">", "%", "@", "`"]
TARGETS = ["    idle_timeout", "    max_line", "    port", "    host", "    plugins", "    send_queue", "    backlog",
           "tuning:\n  switch_interval", "tuning:\n  login_nice", "reload:\n  debounce", "logging:\n  buffer",
           "logging:\n  level", "plugins:\n  echo", "plugins:\n  lol", "state_dir", "x"]
ANCHORS = ["a0", "a1", "a2"]


def flow_values():
    scalar = st.sampled_from(ODD_SCALARS) | st.integers(-2**80, 2**80).map(str) | st.floats().map(repr) \
        | st.text(alphabet="ab:-#&*!{}[], '\"\\\n\t.0", max_size=12)

    def grow(inner):
        return (st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
                | st.lists(st.tuples(st.sampled_from(["k", "port", "1", "? [x]", "*a0", "k"]), inner), max_size=3)
                .map(lambda kvs: "{" + ", ".join(f"{k}: {v}" for k, v in kvs) + "}")
                | st.tuples(st.sampled_from(ANCHORS), inner).map(lambda t: f"&{t[0]} {t[1]}")
                | st.sampled_from(ANCHORS).map(lambda a: f"*{a}"))
    return st.recursive(scalar | st.sampled_from(ANCHORS).map(lambda a: f"*{a}"), grow, max_leaves=12)


@st.composite
def documents(draw) -> str | bytes:
    """Config-shaped YAML with odd values in settings, anchors and aliases between them, tags,
    huge and non-finite numbers, deep nesting, alias bombs, or plain garbage."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=300) | st.binary(max_size=300))
    if kind == 1:  # an alias bomb, sometimes within the limit
        return laughs(draw(st.integers(1, 6)), draw(st.integers(1, 12)))
    if kind == 2:  # nesting, around the limits (ours 100, libyaml's 1000, Python's recursion 1000)
        depth = draw(st.sampled_from([50, 99, 100, 101, 500, 998, 999, 1000, 1001, 5000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}"), ("[&x ", "]")]))
        return SKELETON + "plugins:\n  echo: " + opener * depth + closer * depth + "\n"
    text = SKELETON
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(TARGETS))
        text += f"{target}: {draw(flow_values())}\n"
    return text


def _write(path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", errors="replace"))


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def loader():
    return PluginLoader()


def test_load_config_and_check_config_refuse_any_document_with_one_line_reasons(tmp_path_factory, loader):
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "daemond.yaml"

    @FUZZ
    @given(documents())
    def one(text):
        _write(path, text)
        try:
            config = load_config(path, loader)
        except ConfigError as exc:
            assert_one_line_problems([str(p) for p in exc.problems], path)
            expected = 1
        else:
            assert_finite(config)
            expected = 0
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main(["--check-config", "-c", str(path)])
        assert status == expected, err.getvalue()
        if status:
            *problems, summary = err.getvalue().splitlines()
            assert_one_line_problems(problems, path)
            assert re.fullmatch(r"daemond: config has \d+ problem\(s\)", summary)

    one()


def _limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (1024 * MIB, 1024 * MIB))


@pytest.mark.parametrize("name", ATTACKS)
def test_check_config_refuses_each_attack_with_its_position_and_no_traceback(tmp_path, name):
    text, where = ATTACKS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([installed("daemond"), "--check-config", "-c", str(path)], capture_output=True, text=True,
                          timeout=120, preexec_fn=_limited_memory)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    *problems, summary = proc.stderr.splitlines()
    assert_one_line_problems(problems, path)
    assert summary == f"daemond: config has {len(problems)} problem(s)"
    assert any(p.startswith(f"{path}:{where}") for p in problems), proc.stderr
    if name == "billion-laughs":
        assert f"more than {MAX_VALUES:,} values" in proc.stderr
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        assert peak < 200 * MIB or before * 1024 >= 200 * MIB, f"peak RSS {peak // MIB} MiB"


def test_an_oversized_config_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(SKELETON + "#" * MAX_CONFIG_BYTES)
    proc = subprocess.run([installed("daemond"), "--check-config", "-c", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == f"{path}: config file is larger than {MAX_CONFIG_BYTES:,} bytes (the limit); is it the right file?"


def test_normal_anchors_and_aliases_still_work(tmp_path, loader):
    path = tmp_path / "d.yaml"
    path.write_text("listeners:\n  a: &common\n    port: 0\n    plugins: &plugins [echo]\n    idle_timeout: 30\n"
                    "  b: {port: 0, plugins: *plugins, max_line: 100}\n  c: *common\n")
    config = load_config(path, loader)
    assert config.listeners["c"].idle_timeout == 30.0 and config.listeners["b"].plugins == ("echo",)


# -- a running daemon ----------------------------------------------------------------------

def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reloaded(d, digest: str, what: str) -> dict:
    assert wait_until(lambda: (d.daemon.last_reload or {}).get("digest") == digest, 15), f"no reload of {what}"
    return d.daemon.last_reload


def _reload_now(d) -> dict:
    asked = time.time()
    d.daemon.request_reload()  # what SIGHUP does: the reload thread reloads
    assert wait_until(lambda: (d.daemon.last_reload or {}).get("at", 0) >= asked, 15), "no reload"
    return d.daemon.last_reload


def _watchdog_pinged(receiver, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if receiver.recv(timeout=max(0.01, deadline - time.monotonic())) == "WATCHDOG=1":
                return True
        except TimeoutError:
            return False
    return False


def test_bad_edits_leave_the_reload_thread_and_watchdog_alive_and_the_next_good_edit_applies(
        daemond_factory, tmp_path, monkeypatch):
    notify = tmp_path / "notify.sock"
    receiver = Receiver(str(notify), str(notify))
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s while healthy
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        d = daemond_factory({"echo": {"plugins": ["echo"]}}, reload={"debounce": 0.05})
        good = d.config_path.read_text()
        for name, (text, where) in ATTACKS.items():
            receiver.drain()  # as systemd does: the socket's queue holds only a few datagrams
            d.config_path.write_text(text)
            report = _reloaded(d, _digest(d.config_path), name)
            assert not report["ok"], name
            assert_one_line_problems(report["errors"], d.config_path)
            assert any(e.startswith(f"{d.config_path}:{where}") for e in report["errors"]), report["errors"]
            assert d.daemon.reloader.is_alive() and d.daemon.healthy(), name
            receiver.drain()
            assert _watchdog_pinged(receiver), f"no watchdog ping after {name}"
        doc = yaml.safe_load(good)
        doc["listeners"]["echo"]["max_line"] = 100
        d.config_path.write_text(yaml.safe_dump(doc))
        report = _reloaded(d, _digest(d.config_path), "the good edit")
        assert report["ok"], report
        assert d.daemon.config.listeners["echo"].max_line == 100
    finally:
        receiver.close()


def test_fuzzed_reloads_through_the_reload_thread(daemond_factory):
    d = daemond_factory({"echo": {"plugins": ["echo"]}}, reload={"watch": False})
    good = d.config_path.read_text()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(documents())
    def one(text):
        _write(d.config_path, text)
        report = _reload_now(d)
        # refused by the check (FILE:LINE:COL), or in part by the daemon (a state_dir it cannot change)
        assert all("\n" not in e and "Traceback" not in e for e in report["errors"]), report["errors"]
        assert d.daemon.reloader.is_alive() and d.daemon.healthy()
        d.config_path.write_text(good)

    one()
    doc = yaml.safe_load(good)
    doc["logging"]["buffer"] = 7
    d.config_path.write_text(yaml.safe_dump(doc))
    report = _reload_now(d)
    assert report["ok"], report
    assert d.daemon.config.logging.buffer == 7


def test_the_reload_thread_outlives_an_exception_from_its_reload(tmp_path, caplog):
    from daemon.watcher import Reloader

    path = tmp_path / "daemond.yaml"
    path.write_text(SKELETON)
    calls = []

    def reload(source):
        calls.append(source)
        raise RecursionError("maximum recursion depth exceeded")

    reloader = Reloader(path, "", reload)
    reloader.start(watch=False, debounce=0.05)
    try:
        for n in (1, 2):
            reloader.request()
            assert wait_until(lambda: len(calls) >= n, 10), "the reload thread stopped reloading"
        assert reloader.is_alive()
        failures = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
        assert len(failures) == 2  # one line (with its traceback) per failed reload
    finally:
        reloader.stop()
