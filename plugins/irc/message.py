"""IRC messages: parsing a client's line, formatting the server's.

The grammar is the Modern IRC client protocol's (and IRCv3 message-tags)::

    [@tags SPACE] [:source SPACE] command [params] [SPACE :trailing]

Tags are ``key[=value]`` separated by ``;``, values escaped (``\\:`` ``;``,
``\\s`` space, ``\\\\``, ``\\r``, ``\\n``; any other ``\\x`` is ``x``; a lone
trailing ``\\`` is dropped). A message body (everything after the tags) is at
most 510 bytes before its CR LF; the server's own lines are cut to fit
(:func:`fit`), never split inside a UTF-8 character.

Written here rather than taken from PyPI: the one small tokeniser there
(``irctokens``) has had no release since 2022, and this is forty lines whose
every case is in ``tests/unit/test_irc_message.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: a message's body (without tags and CR LF) is at most this many bytes
BODY_LIMIT = 510

_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}


class BadMessage(ValueError):
    """A line that is no IRC message (empty, or only tags or a source)."""


@dataclass
class Message:
    command: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    source: str | None = None


def unescape_tag(value: str) -> str:
    out = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(_UNESCAPE.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


def escape_tag(value: str) -> str:
    return "".join(_ESCAPE.get(c, c) for c in value)


def parse(line: str) -> Message:
    """One client line (without CR LF) as a :class:`Message`; the command upper-cased."""
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        raw, _, rest = rest[1:].partition(" ")
        for item in raw.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = unescape_tag(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    elif rest.startswith(":"):  # no command: ":" alone is no message
        raise BadMessage("no command")
    params = [p for p in rest.split(" ") if p]
    if not params:
        raise BadMessage("no command")
    if trailing is not None:
        params.append(trailing)
    return Message(params[0].upper(), params[1:], tags, source)


def body(line: str) -> str:
    """A client line without its tags: what the 510-byte limit counts."""
    if line.startswith("@"):
        return line.partition(" ")[2].lstrip(" ")
    return line


#: commands whose text parameter is always sent trailing (``:text``), even one word
_TEXT_COMMANDS = frozenset({"PRIVMSG", "NOTICE", "TOPIC", "KICK", "PART"})


def format_message(source: str | None, command: str, *params: str, tags: dict[str, str] | None = None,
                   trailing: bool | None = None) -> str:
    """A server line (without CR LF); the last parameter is made trailing when it has to be,
    and always for the text of PRIVMSG, NOTICE, TOPIC, KICK and PART, or with ``trailing``."""
    always = trailing if trailing is not None else command in _TEXT_COMMANDS and len(params) >= 2
    parts = [f":{source}"] if source else []
    parts.append(command)
    if params:
        parts.extend(params[:-1])
        last = params[-1]
        parts.append(f":{last}" if always or not last or " " in last or last.startswith(":") else last)
    text = " ".join(parts)
    if tags:
        text = "@" + ";".join(f"{k}={escape_tag(v)}" if v else k for k, v in tags.items()) + " " + text
    return text


def fit(line: str) -> bytes:
    """``line`` encoded with CR LF, its body cut to :data:`BODY_LIMIT` bytes at a character boundary."""
    data = line.encode("utf-8")
    start = data.index(b" ") + 1 if data.startswith(b"@") else 0
    if len(data) - start > BODY_LIMIT:
        data = data[: start + BODY_LIMIT].decode("utf-8", "ignore").encode("utf-8")
    return data + b"\r\n"


def closing_link(server: str, reason: str) -> bytes:
    """The ``ERROR :Closing Link: SERVER (REASON)`` line a client gets before the server closes it."""
    return fit(format_message(None, "ERROR", f"Closing Link: {server} ({reason})"))

