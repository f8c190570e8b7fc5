"""The core's import graph follows the layers docs/architecture.md draws, and has no cycle.

Every import counts: at module level, under ``if TYPE_CHECKING:``, and inside functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "daemon"


def modules() -> dict[str, Path]:
    found = {}
    for path in CORE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The daemond modules ``path`` imports (``from daemon import paths`` is ``daemon.paths``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("daemon", "plugins"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in ("daemon", "plugins"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def layers() -> dict[str, int]:
    """module -> layer number, from the table in docs/architecture.md."""
    table = {}
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        row = re.match(r"\| (\d) [^|]+\|[^|]+\|(.+)\|$", line)
        if row:
            for name in re.findall(r"`([\w.]+)`", row.group(2)):
                table["daemon" if name == "daemon" else f"daemon.{name}"] = int(row.group(1))
    return table


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def test_every_core_module_has_exactly_one_layer():
    table = layers()
    assert len(table) > 20
    assert sorted(set(modules()) - set(table)) == [], "modules missing from docs/architecture.md"
    assert sorted(set(table) - set(modules())) == [], "docs/architecture.md names modules that do not exist"


def test_no_module_imports_a_higher_layer_or_a_plugin():
    table, bad = layers(), []
    for module, targets in graph().items():
        for target in sorted(targets):
            if target.split(".")[0] == "plugins":
                bad.append(f"{module} imports the plugin {target}")
            elif target in table and table[target] > table[module]:
                bad.append(f"{module} (layer {table[module]}) imports {target} (layer {table[target]})")
    assert bad == []


def test_the_import_graph_has_no_cycle():
    edges = graph()
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_checker_sees_an_upward_import():
    # the checks above must be able to fail: an upward import in a copy of the rules is caught
    edges = graph()
    table = layers()
    edges["daemon.session"] = edges["daemon.session"] | {"daemon.core"}
    upward = [m for m, ts in edges.items() for t in ts if t in table and table[t] > table[m]]
    assert upward == ["daemon.session"]
