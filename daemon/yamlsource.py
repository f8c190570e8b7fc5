"""Read YAML keeping where every key and value came from.

The config's validation reports problems as ``FILE:LINE:COL: message``;
PyYAML's node marks give the positions, and this module carries them along
with the plain values (dicts, lists, scalars) the rest of the daemon uses.

PyYAML composes a document into a graph in which an alias is the anchored
node itself, so a few lines can stand for billions of values, or for a value
that contains itself. Converting that graph into values is bounded here: by
the values produced (:data:`MAX_VALUES`, an alias counting each time it is
used), by nesting (:data:`MAX_DEPTH`), and by a value containing itself;
each is a :class:`Problem` at a position, never an exception of another kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

try:  # the C loader is much faster; fall back to pure Python when libyaml is absent
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader

#: the most values (mappings, lists and scalars) a document may stand for, each use of an
#: alias counting its whole value again; a config has a few hundred
MAX_VALUES = 100_000
#: how deeply mappings and lists may nest
MAX_DEPTH = 100
#: the widest integer read (about 1,200 digits): no setting needs more, and Python refuses
#: to print much wider ones
MAX_INT_BITS = 4096


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
    try:
        loader = _Loader(text)
    except UnicodeError as exc:  # text that is no Unicode: a lone surrogate
        raise ProblemList([Problem(Mark(file, 1, 1), f"YAML error: {exc}")]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = _mark(file, exc.problem_mark) if exc.problem_mark else None
        raise ProblemList([Problem(mark, f"YAML syntax error: {_syntax_problem(exc)}")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, at an offset
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise ProblemList([Problem(Mark(file, line, column), f"YAML error: {exc.reason} ({what})")]) from None
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ProblemList([Problem(Mark(file, 1, 1), f"YAML error: {reason}")]) from None
    finally:
        loader.dispose()
    if node is None:
        return None, Mark(file, 1, 1)
    converter = _Converter(loader, file)
    try:
        value = converter.convert(node)
    except _TooMany as exc:
        raise ProblemList([exc.problem]) from None
    if converter.problems:
        raise ProblemList(converter.problems)
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


class _TooMany(Exception):
    """The document stands for more values than :data:`MAX_VALUES`: converting stops."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


class _Converter:
    """Turns one composed document into marked values, within the bounds above."""

    def __init__(self, loader, file: str):
        self.loader = loader
        self.file = file
        self.problems: list[Problem] = []
        self.produced = 0  # values made so far
        self.seen: set[int] = set()  # ids of the collection nodes converted at least once
        self.path: list = []  # the collection nodes being converted, outermost first

    def convert(self, node):
        self.produced += 1
        if self.produced > MAX_VALUES:
            raise _TooMany(self._too_many(node))
        if not isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            return self._scalar(node)
        mark = _mark(self.file, node.start_mark)
        if any(node is outer for outer in self.path):
            self.problems.append(Problem(mark, "this value contains itself (an alias inside the value its anchor names)"))
            return None
        if len(self.path) >= MAX_DEPTH:
            self.problems.append(Problem(mark, f"nested too deeply (more than {MAX_DEPTH} levels of mappings and lists)"))
            return None
        self.path.append(node)
        try:
            return self._mapping(node, mark) if isinstance(node, yaml.MappingNode) else self._sequence(node, mark)
        finally:
            self.path.pop()
            self.seen.add(id(node))

    def _mapping(self, node, mark: Mark) -> MarkedDict:
        out = MarkedDict()
        out.mark = mark
        out.key_marks, out.value_marks = {}, {}
        for key_node, value_node in node.value:
            key = self.convert(key_node)
            try:
                hash(key)
            except TypeError:
                self.problems.append(Problem(_mark(self.file, key_node.start_mark), "a key must be a plain value"))
                continue
            if key in out:
                self.problems.append(Problem(_mark(self.file, key_node.start_mark),
                                             f"duplicate key {key!r} (first at line {out.key_marks[key].line})"))
                continue
            out[key] = self.convert(value_node)
            out.key_marks[key] = _mark(self.file, key_node.start_mark)
            out.value_marks[key] = _mark(self.file, value_node.start_mark)
        return out

    def _sequence(self, node, mark: Mark) -> MarkedList:
        out = MarkedList()
        out.mark = mark
        out.item_marks = []
        for item in node.value:
            out.append(self.convert(item))
            out.item_marks.append(_mark(self.file, item.start_mark))
        return out

    def _scalar(self, node):
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            return self._bad(node, str(getattr(exc, "problem", None) or exc))
        except (ValueError, OverflowError) as exc:  # e.g. a date 2001-13-45, a 5,000-digit integer
            return self._bad(node, str(exc).split(";")[0])
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            return self._bad(node, f"a number too large (more than {MAX_INT_BITS} bits)")
        return value

    def _bad(self, node, why: str) -> None:
        self.problems.append(Problem(_mark(self.file, node.start_mark), f"bad value: {why}"))
        return None

    def _too_many(self, node) -> Problem:
        # the outermost value on the way that was already converted once is an alias being expanded
        again = next((outer for outer in self.path if id(outer) in self.seen), None)
        if again is None:
            return Problem(_mark(self.file, node.start_mark),
                           f"the document has more than {MAX_VALUES:,} values (the limit)")
        return Problem(_mark(self.file, again.start_mark),
                       f"aliases expand the document to more than {MAX_VALUES:,} values (the limit); "
                       "the value anchored here is used again and again, inside values that are themselves repeated")
