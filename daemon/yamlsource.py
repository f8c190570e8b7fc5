"""Read YAML keeping where every key and value came from.

The config's validation reports problems as ``FILE:LINE:COL: message``;
PyYAML's node marks give the positions, and this module carries them along
with the plain values (dicts, lists, scalars) the rest of the daemon uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

try:  # the C loader is much faster; fall back to pure Python when libyaml is absent
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader


@dataclass(frozen=True)
class Mark:
    """A position in a file, 1-based, as editors show it."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Problem(Exception):
    """One thing wrong with a file, at a position."""

    def __init__(self, mark: Mark | None, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message

    def __str__(self) -> str:
        return f"{self.mark}: {self.message}" if self.mark else self.message


class MarkedDict(dict):
    """A mapping that remembers where it, its keys and its values stand."""

    mark: Mark
    key_marks: dict
    value_marks: dict


class MarkedList(list):
    """A sequence that remembers where it and its items stand."""

    mark: Mark
    item_marks: list


def _mark(file: str, yaml_mark) -> Mark:
    return Mark(file, yaml_mark.line + 1, yaml_mark.column + 1)


def load(text: str, file: str) -> tuple[object, Mark]:
    """Parse ``text`` into plain values with marks; raise a list of Problems.

    Returns the document's value (``None`` for an empty document) and the mark
    of its start. Duplicate keys, which PyYAML would silently collapse, are
    reported as problems.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = _mark(file, exc.problem_mark) if exc.problem_mark else None
        raise ProblemList([Problem(mark, f"YAML syntax error: {_syntax_problem(exc)}")]) from None
    except yaml.YAMLError as exc:
        raise ProblemList([Problem(Mark(file, 1, 1), f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if node is None:
        return None, Mark(file, 1, 1)
    problems: list[Problem] = []
    value = _convert(loader, node, file, problems)
    if problems:
        raise ProblemList(problems)
    return value, _mark(file, node.start_mark)


def _syntax_problem(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's complaint, and where the construct it was reading began.

    PyYAML notices an unclosed ``[`` or quote only where the next thing fails
    to fit, often a line later; the construct's own start is what to fix.
    """
    problem = exc.problem or str(exc)
    if not exc.context:
        return problem
    if exc.context_mark is None:
        return f"{problem} ({exc.context})"
    where = f"line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
    construct = re.fullmatch(r"while (?:parsing|scanning) (?:an? )?(.+)", exc.context)
    if construct:
        return f"{problem} (in the {construct.group(1)} that starts at {where})"
    return f"{problem} ({exc.context} at {where})"


class ProblemList(Exception):
    """Several problems at once (a config is checked in full, not to the first error)."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _convert(loader, node, file: str, problems: list[Problem]):
    if isinstance(node, yaml.MappingNode):
        out = MarkedDict()
        out.mark = _mark(file, node.start_mark)
        out.key_marks, out.value_marks = {}, {}
        for key_node, value_node in node.value:
            key = _convert(loader, key_node, file, problems)
            try:
                hash(key)
            except TypeError:
                problems.append(Problem(_mark(file, key_node.start_mark), "a key must be a plain value"))
                continue
            if key in out:
                problems.append(
                    Problem(_mark(file, key_node.start_mark), f"duplicate key {key!r} (first at line {out.key_marks[key].line})")
                )
                continue
            out[key] = _convert(loader, value_node, file, problems)
            out.key_marks[key] = _mark(file, key_node.start_mark)
            out.value_marks[key] = _mark(file, value_node.start_mark)
        return out
    if isinstance(node, yaml.SequenceNode):
        out = MarkedList()
        out.mark = _mark(file, node.start_mark)
        out.item_marks = []
        for item in node.value:
            out.append(_convert(loader, item, file, problems))
            out.item_marks.append(_mark(file, item.start_mark))
        return out
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        problems.append(Problem(_mark(file, node.start_mark), f"bad value: {getattr(exc, 'problem', exc)}"))
        return None
