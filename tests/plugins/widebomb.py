"""Raises in the daemon-wide hooks (robustness item 22, beyond sessions).

``ARMED`` names the hooks that raise; the test sets it. Its control command
``widebomb`` raises when armed too, and ``daemond_configure`` raises when its
settings say ``explode: true``.
"""

from daemon import ControlCommand, Field, Schema, hookimpl

ARMED: set[str] = set()


class Boom(Exception):
    pass


def _maybe(hook: str) -> None:
    if hook in ARMED:
        raise Boom(f"raised on purpose in {hook}")


@hookimpl
def daemond_settings_schema():
    return Schema({"explode": Field(bool, default=False)})


@hookimpl
def daemond_configure(settings, daemon):
    if settings["explode"]:
        raise Boom("raised on purpose in daemond_configure")


@hookimpl
def daemond_status(daemon):
    _maybe("daemond_status")
    return {"fine": True}


@hookimpl
def daemond_control_commands(daemon):
    def run(args):
        _maybe("command")
        return "ok"

    return [ControlCommand("widebomb", "raises when armed", run)]


@hookimpl
def daemond_stopping(daemon):
    _maybe("daemond_stopping")


@hookimpl
def daemond_stopped(daemon):
    _maybe("daemond_stopped")
