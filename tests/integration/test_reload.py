"""Hot reload with a real daemon: edits in every style, bad edits, live changes, no lost clients."""

import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time

import yaml



def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def reloads(proc):
    return re.findall(r"reload \((\w+)\) of \S+ (applied|failed)", proc.stderr())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def edit(path, mutate, style):
    doc = yaml.safe_load(path.read_text())
    mutate(doc)
    text = yaml.safe_dump(doc, sort_keys=False)
    if style == "rewrite":
        path.write_text(text)
    elif style == "rename":  # how vim, VS Code and most editors save
        tmp = path.with_name(".daemond.yaml.swp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        raise ValueError(style)


def echo_ok(port, payload=b"ping"):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return s.recv(100) == payload


def test_add_move_and_remove_listeners_in_every_edit_style(daemond_process):
    proc = daemond_process({"a": {"plugins": ["echo"]}}, reload={"debounce": 0.1})
    path = proc.config
    port_b = free_port()
    edit(path, lambda d: d["listeners"].update(b={"host": "127.0.0.1", "port": port_b, "plugins": ["echo"]}), "rewrite")
    wait_for(lambda: _can_connect(port_b), what="listener b")
    assert echo_ok(port_b)

    port_b2 = free_port()
    edit(path, lambda d: d["listeners"]["b"].update(port=port_b2), "rename")
    wait_for(lambda: _can_connect(port_b2), what="listener b moved")
    # the new address listens first, then the old one is retired: a moment later
    wait_for(lambda: not _can_connect(port_b), what="listener b's old address released")

    # sed -i writes a new file and renames it over the old one
    subprocess.run(["sed", "-i", f"s/port: {port_b2}/port: {port_b}/", str(path)], check=True)
    wait_for(lambda: _can_connect(port_b), what="listener b moved back by sed -i")

    # cp over the file (in place)
    doc = yaml.safe_load(path.read_text())
    del doc["listeners"]["b"]
    other = path.with_name("other.yaml")
    other.write_text(yaml.safe_dump(doc))
    subprocess.run(["cp", str(other), str(path)], check=True)
    wait_for(lambda: not _can_connect(port_b), what="listener b removed")
    assert echo_ok(proc.ports["a"])
    assert all(result == "applied" for _, result in reloads(proc)), proc.stderr()
    assert proc.terminate() == 0


def _can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_bad_edits_keep_the_last_good_config(daemond_factory):
    d = daemond_factory({"a": {"plugins": ["echo"]}}, reload={"debounce": 0.05})
    daemon = d.daemon
    path = d.config_path
    good = path.read_text()
    bad_cases = {
        "invalid yaml": good + "\n  : [\n",
        "unknown key": good + "colour: red\n",
        "half written": good[: len(good) // 2],
        "empty": "",
    }
    for what, text in bad_cases.items():
        before = daemon.last_reload
        path.write_text(text)
        wait_for(lambda: daemon.last_reload is not before, what=f"reload after {what}")
        report = daemon.last_reload
        assert not report["ok"], what
        assert report["errors"] and all(re.match(rf"{re.escape(str(path))}:\d+:\d+: |{re.escape(str(path))}", e)
                                        for e in report["errors"]), report
        assert echo_ok(d.port("a")), what
        assert daemon.status()["reload"]["ok"] is False
    path.write_text(good.replace("level: debug", "level: info"))
    wait_for(lambda: daemon.last_reload["ok"], what="a good reload")
    assert daemon.status()["reload"]["changes"] == ["logging settings changed"]


def test_a_reload_naming_a_plugin_nothing_loads_is_refused(daemond_factory):
    d = daemond_factory({"a": {"plugins": ["echo"]}}, reload={"watch": False})
    doc = yaml.safe_load(d.config_path.read_text())
    doc["plugins"] = {**(doc.get("plugins") or {}), "nosuchplugin": {}}
    d.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    report = d.daemon.reload()
    assert not report["ok"], report
    assert any(re.match(rf"{re.escape(str(d.config_path))}:\d+:\d+: plugin 'nosuchplugin': unknown plugin \(known: ", e)
               for e in report["errors"]), report
    assert "nosuchplugin" not in d.daemon.status()["plugins"]
    assert echo_ok(d.port("a"))


def test_a_port_in_use_fails_that_part_only(daemond_factory):
    d = daemond_factory({"a": {"plugins": ["echo"]}}, reload={"watch": False})
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    free = free_port()
    doc = yaml.safe_load(d.config_path.read_text())
    doc["listeners"]["b"] = {"host": "127.0.0.1", "port": busy, "plugins": ["echo"]}
    doc["listeners"]["c"] = {"host": "127.0.0.1", "port": free, "plugins": ["echo"]}
    d.config_path.write_text(yaml.safe_dump(doc))
    report = d.daemon.reload()
    blocker.close()
    assert not report["ok"]
    assert report["errors"] == [f"listener 'b': cannot listen on 127.0.0.1:{busy}: address already in use"]
    assert f"listener c added on 127.0.0.1:{free}" in report["changes"]
    assert echo_ok(free)


def test_plugin_settings_and_plugin_lists_change_live(daemond_factory):
    d = daemond_factory({"a": {"plugins": ["tests.plugins.withsettings"]}},
                        plugins={"tests.plugins.withsettings": {"greeting": "hello", "times": 1}},
                        reload={"watch": False})
    with d.client("a") as old_session:
        assert old_session.read_line() == "hello"
        doc = yaml.safe_load(d.config_path.read_text())
        doc["plugins"]["tests.plugins.withsettings"] = {"greeting": "bonjour", "times": 2}
        d.config_path.write_text(yaml.safe_dump(doc))
        report = d.daemon.reload()
        assert report["ok"] and "plugin tests.plugins.withsettings settings changed" in report["changes"]
        with d.client("a") as c:
            assert [c.read_line(), c.read_line()] == ["bonjour", "bonjour"]
        # a newly named plugin is loaded; new connections get the new list at once
        doc["listeners"]["a"]["plugins"] = ["tests.plugins.shout"]
        d.config_path.write_text(yaml.safe_dump(doc))
        report = d.daemon.reload()
        assert report["ok"], report
        assert "plugin tests.plugins.shout loaded" in report["changes"]
        with d.client("a") as c:
            assert c.command("hi")[1] == "+OK HI"
        # the old session is untouched
        old_session.send_line("x")
        assert old_session.sock.fileno() != -1


def test_burst_of_saves_is_one_reload_and_touch_is_none(daemond_process):
    # A long debounce keeps this independent of machine load: the burst takes milliseconds.
    proc = daemond_process({"a": {"plugins": ["echo"]}}, reload={"debounce": 1.0})
    path = proc.config
    text = path.read_text()
    os.utime(path)  # touched, content unchanged: no reload
    for i in range(20):
        path.write_text(text.replace("level: debug", "level: info") + f"# save {i}\n")
    wait_for(lambda: reloads(proc), what="the reload")
    time.sleep(1.5)  # a second reload would have shown by now
    assert reloads(proc) == [("watch", "applied")], proc.stderr()
    assert proc.terminate() == 0


def test_reading_the_config_is_not_a_change(daemond_process):
    """The daemon hashes the file after each event; that read must not count as an event itself
    (watchdog reports opens and closes), or it would re-read its config forever."""
    proc = daemond_process({"a": {"plugins": ["echo"]}}, reload={"debounce": 0.05})
    path = proc.config
    path.write_text(path.read_text() + "# an edit\n")
    wait_for(lambda: reloads(proc), what="the reload")
    for _ in range(3):
        path.read_text()  # anyone reading it, the daemon included

    def looks() -> int:
        return proc.stderr().count("content did not change")

    time.sleep(2.0)  # the edit's last events (a loaded machine may deliver them late) are handled
    before = looks()
    time.sleep(1.0)  # 20 debounce periods
    assert looks() == before, proc.stderr()
    assert proc.terminate() == 0


def test_sighup_reloads(daemond_process):
    proc = daemond_process({"a": {"plugins": ["echo"]}}, reload={"watch": False})
    port_b = free_port()
    doc = yaml.safe_load(proc.config.read_text())
    doc["listeners"]["b"] = {"host": "127.0.0.1", "port": port_b, "plugins": ["echo"]}
    proc.config.write_text(yaml.safe_dump(doc))
    time.sleep(0.3)
    assert not _can_connect(port_b)  # watch is off
    proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: _can_connect(port_b), what="listener after SIGHUP")
    # the listener is up before the reload's outcome is logged
    wait_for(lambda: reloads(proc), what="the reload's log line")
    assert reloads(proc) == [("signal", "applied")]
    assert proc.terminate() == 0


def test_fifty_clients_lose_nothing_through_reloads(daemond_process):
    proc = daemond_process({"a": {"plugins": ["echo"]}, "gone": {"plugins": ["echo"]}}, reload={"debounce": 0.05})
    port = proc.ports["a"]
    stop = threading.Event()
    failures = []
    counts = [0] * 50

    def client(i):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                n = 0
                while not stop.is_set():
                    msg = f"{i}:{n};".encode()
                    s.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        got += s.recv(len(msg) - len(got))
                    if got != msg:
                        failures.append((i, msg, got))
                        return
                    n += 1
                counts[i] = n
        except Exception as exc:  # any drop is a failure
            failures.append((i, repr(exc)))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    try:
        edit_through(proc)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:5]
    assert all(counts), counts
    results = [r for _, r in reloads(proc)]
    assert "failed" in results and results[-1] == "applied", proc.stderr()
    assert proc.terminate() == 0


def edit_through(proc):
    """Six edits, one of them broken; each waits for the reload it causes (a loaded machine's
    watcher could otherwise take two edits for one, and never see the broken one)."""
    path = proc.config
    doc = yaml.safe_load(path.read_text())
    for step in range(6):
        if step == 0:
            del doc["listeners"]["gone"]
        elif step == 1:
            seen = len(reloads(proc))
            path.write_text("listeners: [broken\n")
            wait_for(lambda: "failed" in [r for _, r in reloads(proc)[seen:]], what="the broken edit's reload")
            time.sleep(0.3)
            continue
        elif step == 2:
            doc["listeners"]["a"]["max_line"] = 1024 + step
        else:
            doc["listeners"][f"new{step}"] = {"host": "127.0.0.1", "port": 0, "plugins": ["echo"]}
        seen = len(reloads(proc))
        path.write_text(yaml.safe_dump(doc))
        wait_for(lambda: [r for _, r in reloads(proc)[seen:]][-1:] == ["applied"], what=f"edit {step}'s reload")
        time.sleep(0.3)


def _reloader_on(path, loaded: bytes):
    """A Reloader for ``path`` whose daemon loaded ``loaded``; records the reloads it asks for."""
    import hashlib

    from daemon.watcher import Reloader

    asked = []
    return Reloader(path, hashlib.sha256(loaded).hexdigest(), asked.append), asked


def test_an_edit_saved_before_the_watch_began_is_reloaded(tmp_path):
    path = tmp_path / "daemond.yaml"
    path.write_bytes(b"edited: after loading\n")
    reloader, asked = _reloader_on(path, b"as loaded\n")
    reloader.start(True, 0.05)
    try:
        deadline = time.monotonic() + 20
        while not asked and time.monotonic() < deadline:
            time.sleep(0.02)
        assert asked == ["watch"]
    finally:
        reloader.stop()


def test_starting_the_watch_on_an_unchanged_file_logs_and_reloads_nothing(tmp_path, caplog):
    path = tmp_path / "daemond.yaml"
    path.write_bytes(b"as loaded\n")
    reloader, asked = _reloader_on(path, b"as loaded\n")
    with caplog.at_level(logging.DEBUG, logger="daemond.reload"):
        reloader.start(True, 0.05)
        time.sleep(0.3)  # several debounce periods
        reloader.stop()
    assert asked == []
    assert [r.getMessage() for r in caplog.records if "touched" in r.getMessage()] == []
