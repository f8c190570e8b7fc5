"""daemonctl's reader of the two config settings it needs, ``state_dir`` and ``control.socket``.

It reads plain block-style YAML line by line, because importing and running
PyYAML costs ``daemonctl`` more than the rest of its round trip (see
bench/README-ctl.md); whatever it does not follow it declines, and daemonctl
then reads the file with PyYAML. Standard library only, and no regular
expressions: compiling them would cost daemonctl more than the reading.
"""

from __future__ import annotations

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_KEY_CHARS = _LETTERS | frozenset("0123456789-")
_PATH_START = _LETTERS | frozenset("0123456789./~+")
_PATH_CHARS = _PATH_START | frozenset(",@%-")  # path-like plain scalars; anything else is PyYAML's
_NOT_STRINGS = frozenset("y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF".split())
_NULL = ("", "~", "null", "Null", "NULL")


def _key_value(line: str) -> tuple[str, str] | None:
    """``key: value`` (value possibly empty) for a plain key, else None."""
    key, colon, value = line.partition(":")
    key = key.rstrip(" \t")
    if not colon or not key or key[0] not in _LETTERS or not set(key) <= _KEY_CHARS:
        return None
    if value and value[0] not in " \t":
        return None  # "key:value" is a plain scalar to YAML, not a key
    return key, value.strip(" \t")


class _Unsure(Exception):
    """The file uses YAML the quick reader does not follow: let PyYAML read it."""


def quick_control_settings(text: str) -> dict[str, str | None] | None:
    """``state_dir`` and ``control.socket`` of a config, read line by line.

    Follows plain block-style files (like ``etc/daemond.yaml``) and returns
    ``None`` — read it with PyYAML — whenever the file uses anything else where
    it matters: flow style, anchors, tags, multi-line or escaped scalars,
    document markers, complex keys.
    """
    try:
        return _quick(text.splitlines())
    except _Unsure:
        return None


def _quick(lines: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {"state_dir": None, "socket": None}
    seen_a_key = False
    section = None  # the top-level key whose block we are in
    block_indent = None
    for number, raw in enumerate(lines):
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        if "\t" in line[: len(line) - len(stripped)]:
            raise _Unsure
        indent = len(line) - len(stripped)
        if indent == 0:
            pair = _key_value(line)
            if pair is None:
                raise _Unsure  # "---", "? key", "<<: *x", a flow collection's closing line, …
            key, value = pair[0], _strip_comment(pair[1])
            section, block_indent, seen_a_key = key, None, True
            if key == "state_dir":
                found["state_dir"] = _scalar(value, _continues(lines, number))
            elif key == "control":
                if value not in _NULL and value != "{}":
                    raise _Unsure  # flow mapping, anchor, tag
            continue
        if section != "control":
            continue  # inside another section: not ours
        if block_indent is None:
            block_indent = indent
        if indent > block_indent:
            continue  # deeper lines belong to a key of ours only as continuations (checked below)
        if indent < block_indent:
            raise _Unsure
        pair = _key_value(stripped)
        if pair is None:
            raise _Unsure
        if pair[0] == "socket":
            found["socket"] = _scalar(_strip_comment(pair[1]), _continues(lines, number))
    if not seen_a_key:
        raise _Unsure  # empty, or only comments: PyYAML says what is wrong
    return found


def _continues(lines: list[str], number: int) -> bool:
    """Whether the next meaningful line is more indented than line ``number`` (a multi-line value)."""
    indent = len(lines[number]) - len(lines[number].lstrip(" "))
    for raw in lines[number + 1:]:
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            return len(raw) - len(raw.lstrip(" \t")) > indent
    return False


def _strip_comment(value: str) -> str:
    if value.startswith(("'", '"')):
        return value  # a "#" inside quotes is text; _scalar checks the rest
    at = value.find(" #")
    return (value[:at] if at >= 0 else value).strip()


def _only_comment(rest: str) -> bool:
    """Whether what follows a closing quote is nothing or a comment."""
    return not rest.strip() or (rest[0] in " \t" and rest.strip().startswith("#"))


def _scalar(value: str, continues: bool) -> str | None:
    if continues:
        raise _Unsure
    if value.startswith("'"):
        end = value.find("'", 1)
        while end >= 0 and value[end + 1: end + 2] == "'":
            end = value.find("'", end + 2)
        if end < 0 or not _only_comment(value[end + 1:]):
            raise _Unsure
        return value[1:end].replace("''", "'")
    if value.startswith('"'):
        end = value.find('"', 1)
        if end < 0 or "\\" in value[:end] or not _only_comment(value[end + 1:]):
            raise _Unsure
        return value[1:end]
    if value in _NULL:
        return None
    if (value[0] not in _PATH_START or not set(value) <= _PATH_CHARS or value in _NOT_STRINGS
            or value.lstrip("+-.")[:1].isdigit() or value.lower() in (".inf", ".nan")):
        raise _Unsure
    return value
