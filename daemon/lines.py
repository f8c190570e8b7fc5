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
        """The next event: a ``str`` line, :class:`TooLong` or :class:`BadEncoding`; None: more bytes needed."""
        raw = self.next_bytes()
        return raw if raw is None or isinstance(raw, TooLong) else _decode(raw)

    def next_bytes(self):
        """The next line as bytes (without its LF or CRLF), :class:`TooLong`, or None: more bytes needed."""
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
        return raw

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
    """Split a command line into its lower-cased name and its arguments.

    Returns ``(name, args)`` for a line that starts with ``/``: ``name`` keeps
    its ``/`` and is lower-cased, ``args`` is the rest after the first space,
    stripped (``""`` if none). Returns ``None`` for plain text, including a
    line starting with ``//`` (an escaped ``/``: see :func:`plain_text`) and
    the empty line.

    >>> split_command("/MSG bob  hi there ")
    ('/msg', 'bob  hi there')
    >>> split_command("/quit")
    ('/quit', '')
    >>> split_command("//not a command") is None, split_command("hello") is None
    (True, True)
    """
    if not line.startswith("/") or line.startswith("//"):
        return None
    name, _, args = line.partition(" ")
    return name.lower(), args.strip()


def plain_text(line: str) -> str:
    """The text a plain line stands for: a leading ``//`` is an escaped ``/``.

    A client that means to say something starting with ``/`` writes ``//``;
    every other line is returned unchanged (only the first ``/`` of a leading
    ``//`` is dropped). Call it on lines :func:`split_command` returned
    ``None`` for.

    >>> plain_text("//slashed")
    '/slashed'
    >>> plain_text("hello /x")
    'hello /x'
    """
    return line[1:] if line.startswith("//") else line


def parse_count(text: str) -> int | None:
    """The whole number ``text`` spells in ASCII digits (``"20"`` → 20), or ``None``.

    For every number a client sends: only ``0``-``9``, 1 to 18 of them, nothing
    else — no sign, space, underscore, or the other characters ``str.isdigit()``
    accepts and ``int()`` refuses (``"²"``) or reads (``"٣"``). The caller
    decides the range and answers ``None`` with its usage error.

    >>> parse_count("20"), parse_count("²"), parse_count("-1"), parse_count("")
    (20, None, None, None)
    """
    return int(text) if _COUNT.fullmatch(text) else None


def shown(text: str) -> str:
    """``text`` safe to send back to a terminal: C0, DEL and C1 controls written as ``\\xNN``."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
