"""What a reload changes: the difference between the running config and a new one.

Derived from the declarations in :mod:`daemon.config` alone, so a new core
setting needs no code here: a change to a :class:`~daemon.config.Setting`
declared ``restart=True`` is refused (the old value is kept and the reload
reports that a restart is needed); any other changed key is listed under its
section, for :meth:`daemon.core.Daemon.apply` to act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from daemon.config import LISTENER_SCHEMA, SECTIONS, TOP_SCHEMA, Config


@dataclass
class ConfigChanges:
    """``config``: the new config with every restart-only setting kept at its running value.
    ``refused``: one message per restart-only setting that changed. ``sections``: for each
    core section, the keys whose value changed (old, new)."""

    config: Config
    refused: list[str] = field(default_factory=list)
    sections: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    def changed(self, section: str, *keys: str) -> bool:
        """Whether any of ``keys`` (any key, if none is given) of ``section`` changed."""
        found = self.sections.get(section, {})
        return bool(found) if not keys else any(k in found for k in keys)

    def describe(self, section: str) -> str:
        """``tuning settings changed: spare_threads 4, login_nice None`` (new values)."""
        found = self.sections.get(section, {})
        return f"{section} settings changed: " + ", ".join(f"{key} {new}" for key, (_, new) in found.items())


def compare(old: Config, new: Config) -> ConfigChanges:
    """The difference between the running ``old`` config and a validated ``new`` one."""
    changes = ConfigChanges(new)
    if TOP_SCHEMA.fields["state_dir"].restart and new.state_dir != old.state_dir:
        changes.refused.append(_refusal("state_dir", old.state_dir, new.state_dir))
        new = replace(new, state_dir=old.state_dir)
    for section, schema in SECTIONS.items():
        before, after = getattr(old, section), getattr(new, section)
        kept: dict[str, Any] = {}
        changed: dict[str, tuple[Any, Any]] = {}
        for f in fields(after):
            was, now = getattr(before, f.name), getattr(after, f.name)
            if was == now:
                continue
            setting = schema.fields[f.name]
            if setting.restart:
                show = setting.shown or (lambda value: value)
                changes.refused.append(_refusal(f"{section}.{f.name}", show(was) if was is not None else was,
                                                show(now) if now is not None else now))
                kept[f.name] = was
            else:
                changed[f.name] = (was, now)
        if kept:
            new = replace(new, **{section: replace(after, **kept)})
        if changed:
            changes.sections[section] = changed
    new = _keep_restart_only_listener_settings(old, new, changes)
    # control.socket is restart-only, and so is where it resolves to ($RUNTIME_DIRECTORY, state_dir)
    new = replace(new, control_socket=old.control_socket)
    changes.config = new
    return changes


def _keep_restart_only_listener_settings(old: Config, new: Config, changes: ConfigChanges) -> Config:
    """A listener that runs on in the new config keeps its restart-only settings (a listener
    added by the reload takes them as they are)."""
    listeners = dict(new.listeners)
    for name, lc in new.listeners.items():
        was = old.listeners.get(name)
        if was is None:
            continue
        kept = {key: getattr(was, key) for key, setting in LISTENER_SCHEMA.fields.items()
                if setting.restart and getattr(was, key) != getattr(lc, key)}
        for key, value in kept.items():
            changes.refused.append(_refusal(f"listeners.{name}.{key}", value, getattr(lc, key)))
        if kept:
            listeners[name] = replace(lc, **kept)
    return replace(new, listeners=listeners)


def _refusal(what: str, old: Any, new: Any) -> str:
    return f"{what} changed ({old} → {new}): needs a restart; kept the old one"
