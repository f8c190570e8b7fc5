"""The public API's reference (docs/api.md) is generated from the docstrings and covers every
exported name and every public member of what plugins receive; the docstrings' examples run."""

import doctest
import inspect
import re
import sys
from pathlib import Path

import pytest

import daemon
from daemon import apidocs, testing

REPO = Path(__file__).resolve().parents[2]
API_MD = REPO / "docs" / "api.md"


def test_docs_api_md_is_up_to_date():
    assert API_MD.read_text() == apidocs.render(), "docs/api.md is out of date: run python -m daemon.apidocs --write"


def test_every_exported_name_is_in_the_reference_once():
    listed = [name for names in apidocs.GROUPS.values() for name in names]
    assert sorted(listed) == sorted(daemon.__all__), "apidocs.GROUPS must list every name of daemon.__all__ once"
    text = API_MD.read_text()
    for name in daemon.__all__:
        assert text.count(f"\n### `{name}`\n") == 1, name


@pytest.mark.parametrize("name", [n for n in daemon.__all__ if n not in ("PROJECT", "__version__", "hookspec")])
def test_every_exported_name_says_what_it_is_with_an_example(name):
    doc = apidocs.doc_of(name, getattr(daemon, name))
    assert len(doc.split()) >= 15, f"{name}: its docstring is too thin for a reference"
    assert "::" in doc or ">>>" in doc or "Example: see" in doc, f"{name}: its docstring has no example"


@pytest.mark.parametrize("cls", [daemon.Session, daemon.DaemonAPI, daemon.Cluster, testing.RunningDaemon, testing.LineClient],
                         ids=lambda c: c.__name__)
def test_every_public_member_is_in_the_reference_with_its_type(cls):
    text = API_MD.read_text()
    internal = set(apidocs.INTERNAL[cls.__name__])
    documented = {m.name: m for m in apidocs.members(cls)}
    public = apidocs.public_names(cls)
    assert sorted(public - internal - set(documented)) == [], \
        f"{cls.__name__}: document these (a typed annotation with a docstring, or a method's docstring)"
    assert sorted(internal - public) == [], "apidocs.INTERNAL names members that do not exist"
    for name, member in documented.items():
        assert f"#### `{cls.__name__}.{name}" in text
        assert member.doc, f"{cls.__name__}.{name} has no docstring"
        if member.what == "attribute":
            assert member.shown, f"{cls.__name__}.{name}: say its type"
        if member.what == "method":
            assert "->" in member.shown, f"{cls.__name__}.{name}: annotate what it returns"


def test_what_plugins_use_of_a_session_is_documented_not_internal():
    # every `session.X` the built-in plugins use is a documented member
    used = set()
    for path in (REPO / "plugins").rglob("*.py"):
        used |= set(re.findall(r"\bsession\.([a-z_]+)", path.read_text()))
    documented = {m.name for m in apidocs.members(daemon.Session)}
    assert sorted(used - documented) == []


def test_the_member_check_sees_an_undocumented_attribute():
    class Probe:
        known: int
        """documented"""

        def __init__(self):
            self.known = 1
            self.secret_thing = 2

        def act(self) -> None:
            """documented"""

    assert apidocs.public_names(Probe) - {m.name for m in apidocs.members(Probe)} == {"secret_thing"}


@pytest.mark.parametrize("name", [n for n in daemon.__all__ if inspect.isfunction(getattr(daemon, n))
                                  or inspect.isclass(getattr(daemon, n))])
def test_docstring_doctests_pass(name):
    obj = getattr(daemon, name)
    for test in doctest.DocTestFinder(recurse=False).find(obj, name, globs={"daemon": daemon, **{
            n: getattr(daemon, n) for n in daemon.__all__}}):
        result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
        assert result.failed == 0, name


def test_field_error_texts_are_the_ones_documented(daemond_check_config, tmp_path):
    """Field's docstring quotes its error messages; the daemon prints exactly those."""
    (tmp_path / "fieldpkg").mkdir()
    (tmp_path / "fieldpkg" / "__init__.py").write_text("")
    plugin = tmp_path / "fieldpkg" / "fielddoc.py"  # a bare name would have to be an entry point
    plugin.write_text(
        "from daemon import Field, Schema, hookimpl\n\n"
        "@hookimpl\n"
        "def daemond_settings_schema():\n"
        "    return Schema({\n"
        "        'shift': Field(int, default=13, min=1, max=25),\n"
        "        'low': Field(int, default=1, min=1),\n"
        "        'mode': Field(str, default='fast', choices=('fast', 'slow'), normalize=str.lower),\n"
        "        'words': Field(list, items=str, default=[], min=1),\n"
        "        'tags': Field(list, items=str, default=[]),\n"
        "        'name': Field(int, default=1),\n"
        "        'nothing': Field(int, default=1),\n"
        "        'motd': Field(str, nullable=True, default=None, check=lambda v: 'one line only' if '\\n' in v else None),\n"
        "    })\n")
    sys.path.insert(0, str(tmp_path))
    try:
        out = daemond_check_config({"l": {"plugins": ["fieldpkg.fielddoc"]}}, plugins={"fieldpkg.fielddoc": {
            "shift": 30, "low": 0, "mode": "Quick", "words": [], "tags": ["a", "b", 7], "name": "x",
            "nothing": None, "motd": "a\nb", "extra": 1}})
    finally:
        sys.path.remove(str(tmp_path))
    assert out.returncode == 1
    where = "plugins.fieldpkg.fielddoc"
    doc = inspect.getdoc(daemon.Field) + inspect.getdoc(daemon.Schema)
    for key, message in (("shift", "must be at most 25, not 30"), ("low", "must be at least 1, not 0"),
                         ("mode", "must be one of fast, slow, not 'Quick'"),
                         ("words", "must be at least 1 items, not 0"),
                         ("tags[2]", "must be a string, not 7 (an integer)"),
                         ("name", "must be an integer, not 'x' (a string)"), ("nothing", "must be an integer, not null"),
                         ("motd", "one line only")):
        assert f": {where}.{key}: {message}\n" in out.stderr, (key, out.stderr)
        assert message in doc, f"Field's docstring does not quote {message!r}"
    assert f": {where}: unknown key 'extra' (known keys: " in out.stderr
    assert "unknown key 'x' (known keys: a, b)" in doc
    assert out.stderr.rstrip().endswith("daemond: config has 9 problem(s)")
