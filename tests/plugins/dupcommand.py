"""Provides a control command whose name the core already uses (start must fail)."""

from daemon import ControlCommand, hookimpl


@hookimpl
def daemond_control_commands(daemon):
    return [ControlCommand("status", "a second status", lambda args: "mine")]
