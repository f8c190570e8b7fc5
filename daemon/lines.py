"""Line framing for line-based protocols (see docs/protocol.md).

Input is UTF-8 text, one message per line, ended by LF (CRLF accepted). A line
longer than ``max_line`` bytes is reported once and skipped up to its end, so
memory stays bounded however long it runs; a line that is not valid UTF-8 (or
carries NUL) is reported and skipped. Neither ends the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_COUNT = re.compile("[0-9]{1,18}")


class LineError(Exception):
    """A line that cannot be delivered; ``token`` is the protocol's error token."""

    def __init__(self, token: str, text: str):
        super().__init__(text)
        self.token = token
        self.text = text


@dataclass(frozen=True)
class TooLong:
    limit: int


@dataclass(frozen=True)
class BadEncoding:
    reason: str


class LineFramer:
    """Turns received bytes into lines, one at a time.

    ``feed(data)`` adds bytes; ``next()`` returns the next event — a ``str``
    line, :class:`TooLong` or :class:`BadEncoding` — or ``None`` when more
    bytes are needed. ``take_rest()`` hands back the bytes not yet framed, for
    a plugin that switches to raw bytes after a dialogue.
    """

    def __init__(self, max_line: int):
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line, dropping bytes up to its LF

    def feed(self, data: bytes) -> None:
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self._skipping = False
            data = data[nl + 1 :]
        self._buf += data

    def has_pending(self) -> bool:
        return bool(self._buf)

    def next(self):
        buf = self._buf
        if not buf:
            return None
        limit = self.max_line + 1  # room for a CR before the LF
        nl = buf.find(b"\n", 0, limit + 1)
        if nl < 0:
            if len(buf) <= limit:
                return None
            nl = buf.find(b"\n", limit)
            if nl < 0:
                buf.clear()
                self._skipping = True
            else:
                del buf[: nl + 1]
            return TooLong(self.max_line)
        raw = bytes(buf[:nl])
        del buf[: nl + 1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.max_line:
            return TooLong(self.max_line)
        return _decode(raw)

    def take_rest(self) -> bytes:
        """Bytes received but not yet framed (and forget them)."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._skipping = False
        return rest


def _decode(raw: bytes):
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadEncoding(f"invalid UTF-8 at byte {exc.start}")
    if "\x00" in line:
        return BadEncoding("NUL character")
    return line


def split_command(line: str) -> tuple[str, str] | None:
    """``("/msg", "bob hi")`` for a command line, ``None`` for plain text.

    Commands start with ``/``; the name is lower-cased. A line starting with
    ``//`` is plain text (see :func:`plain_text`).
    """
    if not line.startswith("/") or line.startswith("//"):
        return None
    name, _, args = line.partition(" ")
    return name.lower(), args.strip()


def plain_text(line: str) -> str:
    """The text of a plain line: ``//x`` stands for ``/x``."""
    return line[1:] if line.startswith("//") else line


def parse_count(text: str) -> int | None:
    """The whole number ``text`` spells in ASCII digits (``"20"`` → 20), or ``None``.

    For every number a client sends: only ``0``-``9``, 1 to 18 of them, nothing
    else — no sign, space, underscore, or the other characters ``str.isdigit()``
    accepts and ``int()`` refuses (``"²"``) or reads (``"٣"``). The caller
    decides the range and answers ``None`` with its usage error.
    """
    return int(text) if _COUNT.fullmatch(text) else None


def shown(text: str) -> str:
    """``text`` safe to send back to a terminal: C0, DEL and C1 controls written as ``\\xNN``."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
