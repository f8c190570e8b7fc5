"""daemond_control_commands gone wrong: raises, or returns something that is not a command."""

from daemon import hookimpl


class Raises:
    @hookimpl
    def daemond_control_commands(self, daemon):
        raise RuntimeError("no commands today")


class NotACommand:
    @hookimpl
    def daemond_control_commands(self, daemon):
        return ["status"]
