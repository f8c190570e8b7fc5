"""Declarative settings schemas, for the core's config and for plugins' sections.

A plugin describes its section once::

    from daemon import Schema, Field

    SCHEMA = Schema({
        "motd": Field(str, default=""),
        "replay": Field(int, default=20, min=0, max=1000),
    })

and the daemon checks every key, fills in defaults, and reports each problem
with the file, line and column it stands at.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.yamlsource import Mark, Problem


class _Required:
    """The default of a :class:`Field` that has none: the key is required."""

    def __repr__(self) -> str:
        return "REQUIRED"


_MISSING = _Required()

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "a mapping"}


@dataclass
class Field:
    """One setting of a :class:`Schema`: its type, default and checks.

    Arguments (all but ``type`` by keyword):

    * ``type``: ``str``, ``int``, ``float`` (any number; an integer is
      converted), ``bool``, ``list`` or ``dict``. ``true``/``false`` are never
      numbers.
    * ``default``: the value when the key is absent. Leave it out to make the
      key required. The default is used as given, without the checks below.
    * ``help``: one line describing the setting (for your own documentation).
    * ``items``: for ``type=list``, the type every item must have.
    * ``nullable``: ``null`` (``None``) is allowed as well; it skips every
      other check.
    * ``min``, ``max``: bounds for ``int`` and ``float`` values, and for the
      length of a ``list`` (a string's length is not bounded).
    * ``choices``: the values allowed (a sequence).
    * ``check``: a function of the value returning an error message (a
      string), or ``None`` when the value is fine. It runs last, only when
      every other check passed.
    * ``normalize``: a function applied to a value of the right type before
      the other checks; its result is the setting's value (``str.lower``
      makes ``choices`` case-insensitive).

    A number (``int`` or ``float``, and a list's items of those types) must be
    finite: ``.nan``, ``.inf`` and integers too wide for a float are refused
    before any bound or ``check`` sees them. A ``normalize`` or ``check`` that
    raises makes a problem at the value's position, naming the exception.

    Each problem is reported as ``FILE:LINE:COL: WHERE: MESSAGE`` (``WHERE`` is
    ``plugins.<name>.<key>``) and the config is refused; the messages are,
    for the example below:

    * wrong type: ``must be an integer, not 'x' (a string)`` (types are named
      a string, an integer, a number, true or false, a list, a mapping);
    * ``null`` when not ``nullable``: ``must be an integer, not null``;
    * bounds: ``must be at least 1, not 0``, ``must be at most 25, not 30``
      (lists: ``must be at least 1 items, not 0``);
    * choices: ``must be one of fast, slow, not 'Quick'`` (the value as given);
    * a list item: ``WHERE[2]: must be a string, not 7 (an integer)``;
    * ``check``: ``WHERE: `` followed by the message it returned.

    Example::

        Schema({
            "shift": Field(int, default=13, min=1, max=25, help="letters to shift by"),
            "mode": Field(str, default="fast", choices=("fast", "slow"), normalize=str.lower),
            "words": Field(list, items=str, default=[], max=100),
            "motd": Field(str, nullable=True, default=None,
                          check=lambda v: "one line only" if "\\n" in v else None),
        })
    """

    type: type
    default: Any = _MISSING
    help: str = ""
    items: type | None = None
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    choices: Sequence[Any] | None = None
    check: Callable[[Any], str | None] | None = None
    normalize: Callable[[Any], Any] | None = None
    schema: Schema | None = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def validate(self, value: Any, mark: Mark | None, where: str) -> tuple[Any, list[Problem]]:
        if value is None:
            if self.nullable:
                return None, []
            return value, [Problem(mark, f"{where}: must be {_TYPE_NAMES.get(self.type, self.type.__name__)}, not null")]
        problem = _type_problem(value, self.type)
        if problem:
            return value, [Problem(mark, f"{where}: must be {problem}, not {_describe(value)}")]
        if self.type in (int, float) and not _finite(value):
            return value, [Problem(mark, f"{where}: {_not_finite(value)}")]
        if self.schema is not None:
            return self.schema.validate(value, mark, where)
        if self.type is float:
            value = float(value)
        given = value
        if self.normalize is not None:
            try:
                value = self.normalize(value)
            except Exception as exc:  # a plugin's function: its failure is this value's problem
                return value, [Problem(mark, f"{where}: cannot be read: {_failure(exc)}")]
        problems = []
        if self.type is list and self.items is not None:
            marks = getattr(value, "item_marks", None) or [mark] * len(value)
            for i, (item, item_mark) in enumerate(zip(value, marks)):
                item_problem = _type_problem(item, self.items)
                if item_problem:
                    problems.append(Problem(item_mark, f"{where}[{i}]: must be {item_problem}, not {_describe(item)}"))
                elif self.items in (int, float) and not _finite(item):
                    problems.append(Problem(item_mark, f"{where}[{i}]: {_not_finite(item)}"))
        size = len(value) if self.type in (list, dict, str) else value
        if self.type in (int, float, list):
            if self.min is not None and size < self.min:
                what = "at least" if self.type is not list else "at least"
                problems.append(Problem(mark, f"{where}: must be {what} {_num(self.min)}{' items' if self.type is list else ''}, not {_num(size)}"))
            if self.max is not None and size > self.max:
                problems.append(Problem(mark, f"{where}: must be at most {_num(self.max)}{' items' if self.type is list else ''}, not {_num(size)}"))
        if self.choices is not None and value not in self.choices:
            problems.append(Problem(mark, f"{where}: must be one of {', '.join(map(str, self.choices))}, not {given!r}"))
        if not problems and self.check is not None:
            try:
                message = self.check(value)
            except Exception as exc:  # a plugin's function: its failure is this value's problem
                message = f"cannot be checked: {_failure(exc)}"
            if message:
                problems.append(Problem(mark, f"{where}: {message}"))
        return value, problems


@dataclass
class Schema:
    """The keys a settings section may hold: return one from ``daemond_settings_schema``.

    ``fields``: a dict of key to :class:`Field`. ``check``: a function that
    sees the whole validated section (defaults filled in) once every field
    is valid, and returns ``[(key, message), …]`` for problems across keys
    (``[]`` or ``None``: none). ``extra``: a :class:`Field` for keys not
    listed (a section of user-chosen names); without it an unknown key is
    an error: ``plugins.<name>: unknown key 'x' (known keys: a, b)``. A
    required key that is absent: ``missing required key 'x'``.

    The daemon validates your section, fills in the defaults and passes the
    resulting plain ``dict`` to ``daemond_configure``; a plugin without a
    schema gets ``{}``, and a section for it is an error.

    Example::

        @hookimpl
        def daemond_settings_schema():
            return Schema(
                {"low": Field(int, default=1), "high": Field(int, default=10)},
                check=lambda s: [("low", "must not exceed high")] if s["low"] > s["high"] else [],
            )
    """

    fields: dict[str, Field]
    check: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None
    extra: Field | None = field(default=None)

    def defaults(self) -> dict[str, Any]:
        return {name: f.default for name, f in self.fields.items() if not f.required}

    def validate(self, section: Any, mark: Mark | None, where: str) -> tuple[dict[str, Any], list[Problem]]:
        """Check ``section`` (a mapping, possibly with marks); return values with defaults and problems."""
        if section is None:
            section = {}
        if not isinstance(section, dict):
            return {}, [Problem(mark, f"{where}: must be a mapping, not {_describe(section)}")]
        key_marks = getattr(section, "key_marks", {})
        value_marks = getattr(section, "value_marks", {})
        section_mark = getattr(section, "mark", mark)
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for key, value in section.items():
            fld = self.fields.get(key) if isinstance(key, str) else None
            if fld is None and self.extra is not None and isinstance(key, str):
                fld = self.extra
            if fld is None:
                known = ", ".join(self.fields) or "none"
                problems.append(Problem(key_marks.get(key, section_mark), f"{_at(where)}unknown key {key!r} (known keys: {known})"))
                continue
            values[key], found = fld.validate(value, value_marks.get(key, section_mark), f"{where}.{key}" if where else key)
            problems.extend(found)
        for name, fld in self.fields.items():
            if name in values:
                continue
            if fld.required:
                problems.append(Problem(section_mark, f"{_at(where)}missing required key {name!r}"))
            else:
                values[name] = fld.default
        if not problems and self.check is not None:
            try:
                found = list(self.check(values) or [])
            except Exception as exc:  # a plugin's function: its failure is this section's problem
                found = [("", f"cannot be checked: {_failure(exc)}")]
            for key, message in found:
                if not key:
                    problems.append(Problem(section_mark, f"{_at(where)}{message}"))
                    continue
                problems.append(Problem(value_marks.get(key, key_marks.get(key, section_mark)), f"{_at(where + '.' + key if where else key)}{message}"))
        return values, problems


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _type_problem(value: Any, expected: type) -> str | None:
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    return None if ok else _TYPE_NAMES.get(expected, expected.__name__)


def _finite(value: Any) -> bool:
    """Whether a number (already of a numeric type) is a real, float-sized one: not NaN or ±inf."""
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer wider than a float
        return False


def _not_finite(value: Any) -> str:
    if isinstance(value, int):
        return f"must be a number a float can hold (within ±1.8e308), not {_describe(value)}"
    return f"must be a finite number, not {_describe(value)}"


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (dict, list)):
        return _TYPE_NAMES[type(value) if type(value) in _TYPE_NAMES else (dict if isinstance(value, dict) else list)]
    shown = repr(value)
    if isinstance(value, int) and len(shown) > 40:
        return f"a {len(shown.lstrip('-'))}-digit integer"
    if len(shown) > 60:
        shown = f"{shown[:40]}… ({len(shown)} characters)"
    return f"{shown} ({_TYPE_NAMES.get(type(value), type(value).__name__)})"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
