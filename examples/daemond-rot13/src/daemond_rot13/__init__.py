"""rot13: a daemond plugin that answers each line with its Caesar-shifted text."""

import codecs
import threading

from daemon import ControlCommand, Field, Schema, hookimpl, plain_text, split_command

__version__ = "1.0.0"


def shift_text(text: str, shift: int) -> str:
    if shift == 13:
        return codecs.encode(text, "rot13")
    out = []
    for ch in text:
        for base in (ord("a"), ord("A")):
            if base <= ord(ch) < base + 26:
                ch = chr(base + (ord(ch) - base + shift) % 26)
                break
        out.append(ch)
    return "".join(out)


class Rot13:
    """One instance per daemon: the loader creates it from the entry point."""

    def __init__(self):
        self.shift = 13
        self.lines = 0
        self._lock = threading.Lock()  # guards lines: every connection has its own thread

    @hookimpl
    def daemond_settings_schema(self):
        return Schema({"shift": Field(int, default=13, min=1, max=25, help="letters to shift by")})

    @hookimpl
    def daemond_configure(self, settings):
        self.shift = settings["shift"]  # a reload changes it for every connection at once

    @hookimpl
    def daemond_session_open(self, session):
        session.send_line(f"+OK rot{self.shift} ready")

    @hookimpl
    def daemond_line_received(self, session, line):
        if split_command(line) is not None:
            return None  # /help, /quit and others' commands are not ours
        with self._lock:
            self.lines += 1
        session.ok(shift_text(plain_text(line), self.shift))
        return True

    @hookimpl
    def daemond_line_commands(self, session):
        return [("TEXT", f"answers TEXT shifted by {self.shift}")]

    @hookimpl
    def daemond_control_commands(self, daemon):
        def stats(args):
            with self._lock:
                return {"shift": self.shift, "lines": self.lines}

        return [ControlCommand("rot13-stats", "lines rot13 has shifted", stats)]

    @hookimpl
    def daemond_status(self, daemon):
        return {"lines": self.lines}
