"""The code blocks of the plugin author's documents, each with what it is for.

Every fenced block of a Markdown document, and every ``::`` block of a docstring,
must say what it is on the line before it — nothing is guessed:

* ``<!-- file: PATH -->``: the block is the file PATH of the repository, word for word;
* ``<!-- example: plugin NAME -->``: a complete plugin module; the tests save it as
  ``NAME.py`` and start a real daemon with it;
* ``<!-- example: test -->``: a complete pytest test file, run by pytest in a fresh
  process against the plugins of the same document (and the tutorial's ``rot13``);
* ``<!-- example: run -->``: a complete Python script, run as it is;
* ``<!-- fragment: WHY -->``: part of something (a signature, a shell session, a
  snippet that needs its surroundings): not run.

In a docstring the marker is a reST comment, ``.. example: test``, before the ``::``
paragraph. Blocks between a generated section's begin and end markers are the
generator's (the hook reference) and not looked at.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

MARKER = re.compile(r"^\s*<!-- (file|example|fragment): ?(.*?) ?-->\s*$")
RST_MARKER = re.compile(r"^\s*\.\. (example|fragment): ?(.*)$")
GENERATED = (re.compile(r"<!-- hook-reference: begin"), re.compile(r"<!-- hook-reference: end -->"))


@dataclass
class Block:
    where: str  # "docs/plugins.md:42"
    lang: str
    code: str
    kind: str | None  # "file", "plugin", "test", "run", "fragment"; None: no marker (an error)
    arg: str  # the file's path, the plugin's name, or why it is a fragment


def _kind(match: re.Match | None) -> tuple[str | None, str]:
    if match is None:
        return None, ""
    what, arg = match.group(1), match.group(2).strip()
    if what == "example":
        kind, _, arg = arg.partition(" ")
        return kind, arg.strip()
    return what, arg


def markdown_blocks(text: str, name: str) -> list[Block]:
    lines = text.splitlines()
    blocks, i, generated = [], 0, False
    while i < len(lines):
        line = lines[i]
        if GENERATED[0].search(line):
            generated = True
        elif GENERATED[1].search(line):
            generated = False
        fence = re.match(r"^(\s*)```(\w*)\s*$", line)
        if not fence:
            i += 1
            continue
        indent, lang, start = fence.group(1), fence.group(2), i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if generated:
            continue
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        kind, arg = _kind(MARKER.match(above))
        blocks.append(Block(f"{name}:{start + 1}", lang, "\n".join(body) + "\n", kind, arg))
    return blocks


def docstring_blocks(doc: str, name: str) -> list[Block]:
    """The ``::`` blocks of a docstring (``inspect.getdoc``'s text)."""
    lines = doc.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::") or line.lstrip().startswith(".."):
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        body_start = j
        while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
            j += 1
        code = textwrap.dedent("\n".join(lines[body_start:j])).strip("\n") + "\n"
        start = i  # the marker: the last non-blank line above the paragraph that ends in ``::``
        while start > 0 and lines[start - 1].strip():
            start -= 1
        above = next((lines[m] for m in range(start - 1, -1, -1) if lines[m].strip()), "")
        kind, arg = _kind(RST_MARKER.match(above))
        blocks.append(Block(f"{name} (docstring, line {i + 1})", "python", code, kind, arg))
    return blocks
