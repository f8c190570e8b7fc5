"""Run a command on a pseudo-terminal and converse with it (console and confirmation tests)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]|\r")


class Terminal:
    """A process whose stdin and stdout (and stderr unless given) are a pty we hold the master of.

    ``controlling=True`` makes the pty the process's controlling terminal (via
    ``setsid --ctty``), so Ctrl-C typed at it sends SIGINT, as in a real terminal.
    """

    def __init__(self, argv: list[str], env: dict | None = None, stderr=None, controlling: bool = False,
                 cwd: str | None = None):
        self.master, slave = pty.openpty()
        if controlling:
            argv = ["setsid", "--ctty", *argv]
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=stderr if stderr is not None else slave,
                                     env={**os.environ, "TERM": "xterm", **(env or {})}, cwd=cwd,
                                     start_new_session=not controlling)
        os.close(slave)
        self.output = b""  # everything read so far, escape sequences removed
        self._seen = 0  # expect() searches from here

    def write(self, data: bytes | str) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def _read(self, timeout: float) -> bool:
        """Read what is there within ``timeout``; False once the other side is gone (EOF)."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every holder of the slave side has closed it
            return False
        self.output += _ANSI.sub(b"", chunk)
        return bool(chunk)

    def expect(self, text: str, timeout: float = 15.0) -> str:
        """Wait until ``text`` appears after the last match; return the output up to and including it."""
        needle = text.encode()
        deadline = time.monotonic() + timeout
        while True:
            at = self.output.find(needle, self._seen)
            if at >= 0:
                start, self._seen = self._seen, at + len(needle)
                return self.output[start:self._seen].decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)):
                if self.output.find(needle, self._seen) >= 0:
                    continue
                raise AssertionError(f"{text!r} not seen; output so far:\n{self.output.decode(errors='replace')}")

    def read_to_end(self, timeout: float = 15.0) -> str:
        """Everything after the last match, until the process has closed the terminal."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            pass
        return self.output[self._seen:].decode(errors="replace")

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)
