"""The control socket's wire format, shared by the daemon and ``daemonctl``.

One JSON object per line (UTF-8, ``\\n``-terminated) in each direction; the
full schema is in ``docs/control.md``. A client sends requests::

    {"command": "logs", "args": {"lines": 5}, "id": 7}
    {"command": "logs", "argv": ["-n", "5"]}

and gets, per request, exactly one final reply — preceded, for streaming
commands such as ``logs -f``, by ``{"streaming": true}`` and then one
``{"stream": …}`` line per item::

    {"id": 7, "ok": true, "result": […], "text": "…"}
    {"id": 7, "ok": false, "error": {"code": "usage", "message": "…"}}

This module imports only the standard library: ``daemonctl`` starts fast.
"""

from __future__ import annotations

import json
import math
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs daemonctl milliseconds at start; annotations are strings anyway
    from typing import Any

#: Longest request line the daemon reads; a longer one gets a ``too-long`` error.
MAX_REQUEST = 64 * 1024

#: Deepest nesting of arrays and objects in a request (the request object itself is 1).
MAX_DEPTH = 32

#: Error codes of a final reply (``error.code``).
BAD_REQUEST = "bad-request"  # not a JSON object, or fields of the wrong type
TOO_LONG = "too-long"  # the request line is over MAX_REQUEST bytes
USAGE = "usage"  # unknown command or wrong arguments
CONFIRM = "confirm"  # the command asks a question first: resend with "confirmed": true
ARGUMENT_NEEDED = "argument-needed"  # details name the argument to ask for; resend with it in "args"
FAILED = "failed"  # the command ran and reported failure
INTERNAL = "internal"  # the command raised unexpectedly (logged by the daemon)
FORBIDDEN = "forbidden"  # the peer's uid may not use the socket; the connection is closed

#: daemonctl's exit statuses.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3


class ProtocolError(Exception):
    """A request or reply line that does not follow the schema."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


_REQUEST_FIELDS = {"command", "args", "argv", "id", "confirmed", "text"}


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line of ASCII JSON; ValueError if it holds NaN or an infinity (not JSON)."""
    return json.dumps(message, ensure_ascii=True, allow_nan=False, default=str).encode("ascii") + b"\n"


def request(command: str, *, argv: list[str] | None = None, args: dict[str, Any] | None = None,
            confirmed: bool = False, text: bool = False, id: Any = None) -> bytes:
    """A request line (what daemonctl sends)."""
    message: dict[str, Any] = {"command": command}
    if argv is not None:
        message["argv"] = list(argv)
    if args is not None:
        message["args"] = args
    if confirmed:
        message["confirmed"] = True
    if text:
        message["text"] = True
    if id is not None:
        message["id"] = id
    return encode(message)


def parse_request(line: bytes) -> dict[str, Any]:
    """Check one request line; raise :class:`ProtocolError` (``bad-request``) with the reason.

    Strict JSON: NaN, Infinity and numbers beyond a float's range are refused, and
    so is nesting deeper than :data:`MAX_DEPTH`, so that every reply, which echoes
    ``id``, is JSON too.
    """
    if _depth(line) > MAX_DEPTH:
        raise ProtocolError(BAD_REQUEST, f"request is nested more than {MAX_DEPTH} levels deep")
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
    except UnicodeDecodeError:
        raise ProtocolError(BAD_REQUEST, "request is not valid UTF-8") from None
    except RecursionError:
        raise ProtocolError(BAD_REQUEST, f"request is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise ProtocolError(BAD_REQUEST, f'request is not JSON ({exc}); send e.g. {{"command": "status"}}') from None
    if not isinstance(message, dict):
        raise ProtocolError(BAD_REQUEST, 'request must be a JSON object, e.g. {"command": "status"}')
    unknown = set(message) - _REQUEST_FIELDS
    if unknown:
        raise ProtocolError(BAD_REQUEST, f"unknown request field(s): {', '.join(sorted(unknown))}")
    command = message.get("command")
    if not isinstance(command, str) or not command:
        raise ProtocolError(BAD_REQUEST, "request needs \"command\": a non-empty string")
    if "args" in message and not isinstance(message["args"], (dict, type(None))):
        raise ProtocolError(BAD_REQUEST, "\"args\" must be an object of arguments by name")
    argv = message.get("argv")
    if argv is not None and not (isinstance(argv, list) and all(isinstance(w, str) for w in argv)):
        raise ProtocolError(BAD_REQUEST, "\"argv\" must be a list of strings")
    for flag in ("confirmed", "text"):
        if not isinstance(message.get(flag, False), bool):
            raise ProtocolError(BAD_REQUEST, f"\"{flag}\" must be true or false")
    return message


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def _depth(line: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, counted without recursion (strings skipped)."""
    if line.count(b"[") + line.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper: skip the scan
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', line)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def ok(result: Any, text: str | None = None, id: Any = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": True, "result": result}
    if text is not None:
        reply["text"] = text
    if id is not None:
        reply["id"] = id
    return reply


def error(code: str, message: str, details: Any = None, id: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    reply: dict[str, Any] = {"ok": False, "error": err}
    if id is not None:
        reply["id"] = id
    return reply


def streaming(id: Any = None) -> dict[str, Any]:
    """The first line of a streaming reply: items follow, for as long as the stream lasts."""
    reply: dict[str, Any] = {"streaming": True}
    if id is not None:
        reply["id"] = id
    return reply


def stream(item: Any, id: Any = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"stream": item}
    if id is not None:
        reply["id"] = id
    return reply


def parse_reply(line: bytes) -> dict[str, Any]:
    """Check one reply line (what daemonctl reads)."""
    try:
        message = json.loads(line.decode("utf-8"))
    except ValueError:
        raise ProtocolError(BAD_REQUEST, f"the daemon sent a line that is not JSON: {line[:80]!r}") from None
    if not isinstance(message, dict) or not ("ok" in message or "stream" in message or "streaming" in message):
        raise ProtocolError(BAD_REQUEST, f"the daemon sent an unexpected reply: {line[:80]!r}")
    return message


def exit_status(reply: dict[str, Any]) -> int:
    """daemonctl's exit status for a final reply."""
    if reply.get("ok"):
        return EXIT_OK
    code = (reply.get("error") or {}).get("code")
    return EXIT_USAGE if code in (USAGE, CONFIRM, ARGUMENT_NEEDED) else EXIT_FAILED
