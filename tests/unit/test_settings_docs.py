"""Every setting is documented, and the shipped config shows it with its real default (datasette's test_docs, for settings).

Core keys come from the schemas in ``daemon/config.py`` and are documented in
``docs/configuration.md``; each built-in plugin's keys come from the schema it
returns from ``daemond_settings_schema`` and are documented in that plugin's
doc (``PLUGIN_DOCS``). A key is documented by a table row ``| `key` | …`` whose
"default" column, when it holds one literal, must be that default.

``etc/daemond.yaml`` must show every key, active or commented out. The rule for
reading it: a comment line ``# KEY: VALUE`` whose KEY is a setting's (or a
section's, a listener's, a plugin's) name is that setting commented out; it is
uncommented (the ``#`` and one space removed) and the file parsed as YAML. Each
value shown must be the schema's default as the schema itself validates it
(``300`` for a float ``300.0`` passes, ``512 * 1024`` cannot be written, and
``1`` is not ``true``). The first listener documents every listener key; the
others are examples and may differ.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from daemon import yamlsource
from daemon.config import LISTENER_SCHEMA, SECTIONS, TOP_SCHEMA
from daemon.loader import PluginLoader
from daemon.settings import Schema

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "etc" / "daemond.yaml"

#: where each built-in plugin documents its settings
PLUGIN_DOCS = {"echo": "docs/configuration.md", "auth": "docs/protocol.md", "chat": "docs/chat.md",
               "irc": "docs/irc.md"}


def builtin_plugins() -> list[str]:
    return sorted(ep.name for ep in entry_points(group="daemond.plugins") if ep.value.startswith("plugins."))


def plugin_schema(name: str) -> Schema | None:
    return PluginLoader().load(name).settings_schema()


def documented(path: str) -> dict[str, str]:
    """``{key: default cell}`` from every Markdown table in ``path`` with a "default" column."""
    rows: dict[str, str] = {}
    default_col = None
    for line in (ROOT / path).read_text().splitlines():
        if not line.startswith("|"):
            default_col = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if default_col is None:  # a table's header
            lowered = [c.lower() for c in cells]
            default_col = lowered.index("default") if "default" in lowered else -1
            continue
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        if match and default_col >= 0:
            rows[match.group(1)] = cells[default_col] if default_col < len(cells) else ""
    return rows


def core_keys() -> dict[str, object]:
    """Every core key as documented (``listeners.NAME.port``), with its Field."""
    keys = {}
    for top, fld in TOP_SCHEMA.fields.items():
        if top in SECTIONS:
            keys.update({f"{top}.{k}": f for k, f in SECTIONS[top].fields.items()})
        elif top == "listeners":
            keys.update({f"listeners.NAME.{k}": f for k, f in LISTENER_SCHEMA.fields.items()})
            for k, f in LISTENER_SCHEMA.fields.items():  # nested sections: listeners.NAME.tls.cert
                if f.schema is not None:
                    keys.update({f"listeners.NAME.{k}.{n}": nf for n, nf in f.schema.fields.items()})
        elif top == "plugins":
            keys["plugins.NAME"] = None  # each plugin's own keys are checked against its doc
        else:
            keys[top] = fld
    return keys


def check_default_cell(key: str, fld, cell: str) -> None:
    if fld is None:
        return
    if fld.required:
        assert cell.lower() == "required", f"{key}: documented default {cell!r}, but the key is required"
        return
    literal = re.fullmatch(r"`([^`]*)`", cell)
    if literal is None:  # prose: allowed only for a default computed at run time (null in the schema)
        assert fld.default is None, f"{key}: documented default {cell!r} is not the literal {fld.default!r}"
        return
    text = literal.group(1)
    value = text if fld.type is str and text.startswith("#") else yaml.safe_load(text or '""')  # `#lobby` is a name here
    shown, problems = fld.validate(value, None, key)
    assert not problems and shown == fld.default, f"{key}: documented default {cell} is not {fld.default!r}"


def test_every_builtin_plugin_has_a_doc():
    assert builtin_plugins() == sorted(PLUGIN_DOCS)


def test_every_core_key_is_documented_with_its_default():
    rows = documented("docs/configuration.md")
    missing = [key for key in core_keys() if key not in rows]
    assert not missing, f"not in docs/configuration.md: {missing}"
    for key, fld in core_keys().items():
        check_default_cell(key, fld, rows[key])


def test_configuration_md_documents_no_key_that_does_not_exist():
    rows = documented("docs/configuration.md")
    assert set(rows) <= set(core_keys()), set(rows) - set(core_keys())


@pytest.mark.parametrize("plugin", sorted(PLUGIN_DOCS))
def test_every_plugin_key_is_documented_with_its_default(plugin):
    schema = plugin_schema(plugin)
    if schema is None:
        return
    rows = documented(PLUGIN_DOCS[plugin])
    missing = [key for key in schema.fields if key not in rows]
    assert not missing, f"{plugin}'s settings not in {PLUGIN_DOCS[plugin]}: {missing}"
    for key, fld in schema.fields.items():
        check_default_cell(f"plugins.{plugin}.{key}", fld, rows[key])


def known_names() -> set[str]:
    names = set(TOP_SCHEMA.fields) | set(LISTENER_SCHEMA.fields) | set(PLUGIN_DOCS)
    for schema in SECTIONS.values():
        names |= set(schema.fields)
    for plugin in PLUGIN_DOCS:
        names |= set((plugin_schema(plugin) or Schema({})).fields)
    return names


def shipped_with_comments_uncommented() -> dict:
    text = SHIPPED.read_text()
    names = known_names()
    lines = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\s*)# (\s*([a-z_][a-z0-9_]*):(?:\s.*)?)", line)
        if match and match.group(3) in names:
            line = match.group(1) + match.group(2)
        lines.append(line)
    value, _ = yamlsource.load("\n".join(lines), str(SHIPPED))  # a key shown twice is an error here
    return value


def assert_shows_defaults(where: str, schema: Schema, section) -> None:
    assert isinstance(section, dict), f"etc/daemond.yaml: {where} is not shown"
    missing = [key for key in schema.fields if key not in section]
    assert not missing, f"etc/daemond.yaml: {where} does not show {missing}"
    values, problems = schema.validate(section, None, where)
    assert not problems, [str(p) for p in problems]
    wrong = {key: section[key] for key, fld in schema.fields.items()
             if not fld.required and values[key] != fld.default}
    assert not wrong, f"etc/daemond.yaml: {where} shows {wrong}, not the defaults"


def test_the_shipped_config_shows_every_core_key_with_its_default():
    doc = shipped_with_comments_uncommented()
    assert set(doc) == set(TOP_SCHEMA.fields), set(TOP_SCHEMA.fields) ^ set(doc)
    for top, fld in TOP_SCHEMA.fields.items():
        if top in SECTIONS:
            assert_shows_defaults(top, SECTIONS[top], doc[top])
        elif top == "listeners":
            first = next(iter(doc["listeners"]))
            assert_shows_defaults(f"listeners.{first}", LISTENER_SCHEMA, doc["listeners"][first])
        elif top != "plugins":
            assert doc[top] == fld.default, f"etc/daemond.yaml: {top} shows {doc[top]!r}, not {fld.default!r}"


@pytest.mark.parametrize("plugin", sorted(PLUGIN_DOCS))
def test_the_shipped_config_shows_every_plugin_key_with_its_default(plugin):
    schema = plugin_schema(plugin)
    sections = shipped_with_comments_uncommented()["plugins"] or {}
    if schema is None:
        assert plugin not in sections  # a section would be an error: the plugin takes no settings
        return
    assert_shows_defaults(f"plugins.{plugin}", schema, sections.get(plugin))


def test_the_shipped_config_shows_nested_sections_keys_with_their_defaults():
    """A nested section (``tls``) is shown as comments ``#   tls.KEY: VALUE`` in the first listener."""
    shown = dict(re.findall(r"(?m)^\s*#\s+tls\.([a-z_]+): (.*)$", SHIPPED.read_text()))
    schema = LISTENER_SCHEMA.fields["tls"].schema
    assert set(shown) == set(schema.fields), set(shown) ^ set(schema.fields)
    for key, fld in schema.fields.items():
        if not fld.required:
            value, problems = fld.validate(yaml.safe_load(shown[key]), None, key)
            assert not problems and value == fld.default, f"etc/daemond.yaml: tls.{key} shows {shown[key]}"


def test_the_shipped_config_as_shipped_is_valid_and_the_uncommenting_rule_sees_comments():
    """The rule above must not turn prose into settings, nor miss a commented-out setting."""
    active = yaml.safe_load(SHIPPED.read_text())
    full = shipped_with_comments_uncommented()
    assert set(full) - set(active), "no commented-out setting found: is the rule still reading the file?"
    assert active["listeners"] == full["listeners"]
