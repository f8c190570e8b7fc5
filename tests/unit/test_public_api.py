"""The public API is what the built-in plugins use: they import only what ``daemon`` exports,
as a third-party plugin must, and ``import daemon`` stays cheap."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import daemon

REPO = Path(__file__).resolve().parents[2]
PLUGIN_MODULES = sorted((REPO / "plugins").rglob("*.py"))


def daemon_imports(path: Path) -> list[tuple[int, str]]:
    """(line, what) for every import of the daemon package in ``path`` that is not
    ``from daemon import <exported name>``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.startswith("daemon.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("daemon."):
                found.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "daemon":
                found += [(node.lineno, f"from daemon import {a.name} (not exported)") for a in node.names
                          if a.name not in daemon.__all__]
    return found


def test_the_meta_test_sees_private_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import daemon.lines\nfrom daemon.commands import Argument\nfrom daemon import hookimpl, tuning\n"
                      "from daemon import Session\nif True:\n    from daemon.config import load_config\n")
    assert daemon_imports(sample) == [(1, "import daemon.lines"), (2, "from daemon.commands import ..."),
                                      (3, "from daemon import tuning (not exported)"),
                                      (6, "from daemon.config import ...")]


@pytest.mark.parametrize("path", PLUGIN_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_built_in_plugins_import_only_the_public_api(path):
    assert daemon_imports(path) == [], f"{path.relative_to(REPO)}: import these from `daemon` (export them there)"


def test_every_exported_name_resolves():
    for name in daemon.__all__:
        assert getattr(daemon, name) is not None, name
        assert name in daemon.__doc__ or name in ("PROJECT", "__version__"), f"{name} is not in daemon's docstring"


def test_import_daemon_stays_cheap():
    code = "import daemon, sys; print(sorted(m for m in ('pluggy', 'yaml', 'argon2', 'daemon.session') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_load_plugin_settings_reads_a_plugins_section_for_an_offline_tool(tmp_path):
    config = tmp_path / "d.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nplugins:\n  auth: {{database: users.db}}\n"
                      "listeners:\n  login: {port: 0, plugins: [auth, echo]}\n")
    settings, resolve = daemon.load_plugin_settings(str(config), "auth")
    assert settings["database"] == "users.db" and settings["min_password"] == 8  # defaults filled in
    assert resolve(settings["database"]) == tmp_path / "state" / "users.db"
    assert daemon.load_plugin_settings(str(config), "chat")[0] == {}
    config.write_text(config.read_text().replace("database: users.db", "min_password: nope"))
    with pytest.raises(daemon.PluginError, match=r"d\.yaml:3:\d+: .*min_password"):
        daemon.load_plugin_settings(str(config), "auth")


PRIVATE_IMPORT = r"(?m)^\s*(?:from daemon\.[\w.]+ import|import daemon\.\w)|(?:^|[\s`])from daemon import (\w+)"


def taught_private_imports(text: str) -> list[str]:
    """The imports of private modules, or of names ``daemon`` does not export, in ``text``."""
    import re

    found = []
    for match in re.finditer(PRIVATE_IMPORT, text):
        if match.group(1) is None:
            found.append(match.group(0).strip())
        elif match.group(1) not in daemon.__all__:
            found.append(f"from daemon import {match.group(1)}")
    # the rest of a `from daemon import a, b, (c)` line
    for line in re.findall(r"from daemon import ([\w, ()]+)", text):
        found += [f"from daemon import {n}" for n in re.findall(r"\w+", line) if n not in daemon.__all__]
    return sorted(set(found))


def test_the_docs_check_sees_a_private_import():
    assert taught_private_imports("```python\nfrom daemon.testing import LineClient\nimport daemon.lines\n"
                                  "from daemon import hookimpl, Daemon\n```\n`from daemon import Session`") == \
        ["from daemon import Daemon", "from daemon.testing import", "import daemon.l"]


@pytest.mark.parametrize("path", sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
                         + sorted((REPO / "examples").rglob("*.py")) + sorted((REPO / "examples").rglob("*.md")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_docs_never_teach_a_private_import(path):
    assert taught_private_imports(path.read_text()) == [], \
        f"{path.relative_to(REPO)}: plugins import only what `daemon` exports"


def test_the_public_docstrings_never_teach_a_private_import():
    import inspect

    from daemon import apidocs, testing

    docs = [apidocs.doc_of(n, getattr(daemon, n)) for n in daemon.__all__]
    docs += [ast.get_docstring(node) or "" for node in ast.walk(ast.parse(inspect.getsource(testing)))
             if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))]
    assert taught_private_imports("\n".join(docs)) == []
