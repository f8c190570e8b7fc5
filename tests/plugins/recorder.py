"""Records every hook call it receives, for the per-hook tests (tests/integration/test_hooks.py)."""

import threading

from daemon import Field, Schema, SessionEnd, hookimpl


class Recorder:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()  # guards calls: hooks arrive from many threads
        self.settings = None
        self.daemon = None

    def record(self, *entry):
        with self.lock:
            self.calls.append(entry)

    def names(self):
        with self.lock:
            return [c[0] for c in self.calls]

    @hookimpl
    def daemond_settings_schema(self):
        return Schema({"tag": Field(str, default="rec"), "open_line": Field(bool, default=False)})

    @hookimpl
    def daemond_configure(self, settings, daemon):
        self.settings = settings
        self.record("configure", dict(settings))

    @hookimpl
    def daemond_start(self, daemon):
        self.daemon = daemon
        self.record("start", len(daemon.sessions()))

    @hookimpl
    def daemond_stopping(self, daemon):
        sessions = daemon.sessions()
        for s in sessions:
            s.send_line(f"NOTICE {self.settings['tag']} going down")
        self.record("stopping", len(sessions))

    @hookimpl
    def daemond_stopped(self, daemon):
        self.record("stopped", len(daemon.sessions()))

    @hookimpl
    def daemond_session_open(self, session):
        self.record("session_open", session.listener, session.peer[0])
        if self.settings["open_line"]:
            name = session.read_line(timeout=5)
            if name == "nobody":
                session.err("go-away")
                raise SessionEnd("refused")
            session.login(name)

    @hookimpl
    def daemond_session_login(self, session, user):
        self.record("session_login", user)
        session.send_line(f"WELCOME {user}")

    @hookimpl
    def daemond_line_received(self, session, line):
        self.record("line_received", line)
        if line.startswith("rec "):
            session.ok(f"{self.settings['tag']} {line[4:]}")
            return True
        return None

    @hookimpl
    def daemond_session_close(self, session, reason):
        self.record("session_close", reason)

    @hookimpl
    def daemond_line_commands(self, session):
        return [("rec TEXT", "record TEXT")]

    @hookimpl
    def daemond_status(self, daemon):
        return {"recorded": len(self.calls)}


class Bytes:
    """A raw-bytes plugin: answers each chunk with its length."""

    @hookimpl
    def daemond_data_received(self, session, data):
        session.send(b"%d\n" % len(data))


class Grabber:
    """Handles every line, so a plugin after it never sees one (firstresult)."""

    @hookimpl
    def daemond_line_received(self, session, line):
        session.ok(f"grabbed {line}")
        return True


class BrokenClose:
    @hookimpl
    def daemond_session_close(self, session, reason):
        raise RuntimeError("close hook failed")


class Gate:
    """Gates its listener behind a login (the ``daemond_login_gate`` hook): the first line is the name."""

    @hookimpl
    def daemond_login_gate(self):
        return True

    @hookimpl
    def daemond_session_open(self, session):
        session.ok("name?")
        session.login(session.read_line())
        session.ok("in")


class PoliteGate(Gate):
    """A gate that says why it refuses or ends a connection in its own words (``daemond_farewell``)."""

    @hookimpl
    def daemond_farewell(self, reason, text):
        return f"SORRY {reason}: {text}\r\n".encode()


class LegacyGate(Gate):
    """The same, gated by the attribute that came before the hook."""

    daemond_login_gate = True
