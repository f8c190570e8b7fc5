"""Every complete example of the plugin author's documents runs, against a real daemon.

The documents mark each code block (tests/support/docblocks.py says how): a plugin is
saved as a module and started in a real daemon; a test file is run by pytest in a fresh
process — as a plugin author's project would run it, with only daemond's own pytest
plugin — next to the document's plugins and the tutorial's ``rot13`` (installed there
by its metadata, so that its entry-point name resolves); a script is run. A block
without a marker fails the test: nothing is skipped by guessing.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.docblocks import Block, docstring_blocks, markdown_blocks

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "daemond-rot13"
DOCUMENTS = ("docs/plugins.md", "docs/tutorial.md", "docs/testing.md", "daemon/testing.py")
KINDS = ("file", "plugin", "test", "run", "fragment")


def document_blocks(name: str) -> list[Block]:
    if name.endswith(".py"):
        assert name == "daemon/testing.py"
        tree = ast.parse((REPO / name).read_text())
        docs = [ast.get_docstring(node) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))]
        return [b for doc in docs if doc for b in docstring_blocks(doc, name)]
    return markdown_blocks((REPO / name).read_text(), name)


def install_rot13_metadata(site: Path) -> None:
    """Make the tutorial's package installed for a process with ``site`` and its source on
    the path: the metadata pip would write, so ``rot13`` resolves by its entry point."""
    info = site / "daemond_rot13-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: daemond-rot13\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[daemond.plugins]\nrot13 = daemond_rot13:Rot13\n")


def run_examples(blocks: list[Block], work: Path) -> subprocess.CompletedProcess | None:
    """Save the plugins and tests of ``blocks`` in ``work`` and run them: None if there is nothing to run."""
    plugins, tests = [], []
    for n, block in enumerate(blocks):
        if block.kind == "plugin":
            module, colon, attr = block.arg.partition(":")
            if colon:  # module:Class names it whole
                (work / f"{module}.py").write_text(block.code)
                plugins.append(block.arg)
            else:  # a module plugin goes by its dotted path (a bare name is an entry point only)
                (work / "docplugins").mkdir(exist_ok=True)
                (work / "docplugins" / "__init__.py").write_text("")
                (work / "docplugins" / f"{module}.py").write_text(block.code)
                plugins.append(f"docplugins.{module}")
        elif block.kind == "test" or (block.kind == "file" and re.search(r"/tests/test_\w+\.py$", block.arg)):
            path = work / f"test_doc_{n}.py"
            path.write_text(f"# {block.where}\n{block.code}")
            tests.append(path)
        elif block.kind == "run":
            path = work / f"run_doc_{n}.py"
            path.write_text(block.code)
            tests.append(None)
            (work / f"test_run_{n}.py").write_text(
                "import runpy\n\n\n"
                f"def test_the_script_runs():  # {block.where}\n"
                f"    runpy.run_path({str(path)!r}, run_name='__main__')\n")
    if plugins:  # each plugin starts in a real daemon, and a line reaches it if it takes lines
        (work / "test_doc_plugins_start.py").write_text(
            "import pytest\n\n\n"
            f"@pytest.mark.parametrize('plugin', {plugins!r})\n"
            "def test_the_plugin_starts_in_a_daemon(daemond_factory, plugin):\n"
            "    d = daemond_factory({'l': {'plugins': [plugin]}})\n"
            "    assert d.control('plugins')['ok']\n"
            "    with d.client('l') as c:\n"
            "        c.send_line('hello')\n")
    if not (plugins or tests):
        return None
    install_rot13_metadata(work / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), str(work / "site"), str(EXAMPLE / "src")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(work), str(work)],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_code_block_says_what_it_is(name):
    blocks = document_blocks(name)
    assert blocks, f"{name}: no code blocks found"
    unmarked = [b.where for b in blocks if b.kind not in KINDS]
    assert unmarked == [], "mark each block: <!-- file: P -->, <!-- example: plugin|test|run -->, <!-- fragment: why -->"
    for block in blocks:
        if block.kind == "fragment":
            assert block.arg, f"{block.where}: say why the block is a fragment"
        if block.kind == "file":
            assert (REPO / block.arg).read_text() == block.code, f"{block.where}: differs from {block.arg}"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_complete_examples_run_against_a_real_daemon(name, tmp_path):
    blocks = document_blocks(name)
    proc = run_examples(blocks, tmp_path)
    assert proc is not None, f"{name} has no complete example"
    assert proc.returncode == 0, f"{name}'s examples failed:\n{proc.stdout}\n{proc.stderr}"
    ran = int(re.search(r"(\d+) passed", proc.stdout).group(1))
    assert ran >= sum(b.kind in ("test", "run", "plugin") for b in blocks)


def test_a_drifted_example_fails(tmp_path):
    """The runner can fail: the testing docstring's old example (a reply without its greeting) does."""
    old = Block("old", "python", 'def test_rot13(daemond_factory):\n'
                '    d = daemond_factory({"rot": {"plugins": ["rot13"]}})\n'
                '    with d.client("rot") as c:\n'
                '        c.send_line("hello")\n'
                '        assert c.read_line() == "uryyb"\n', "test", "")
    proc = run_examples([old], tmp_path)
    assert proc.returncode == 1 and "'+OK rot13 ready' == 'uryyb'" in proc.stdout, proc.stdout


def test_an_unmarked_block_is_found():
    blocks = markdown_blocks("text\n\n```python\nprint(1)\n```\n\n<!-- fragment: a part -->\n```sh\nls\n```\n", "x.md")
    assert [(b.kind, b.arg) for b in blocks] == [(None, ""), ("fragment", "a part")]
