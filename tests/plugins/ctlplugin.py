"""Control commands of a plugin: one that asks for confirmation, one that fails, one
that crashes, one that echoes its arguments, one that streams (for the control tests)."""

from daemon import CommandError, ControlCommand, hookimpl
from daemon.commands import Argument, ArgumentNeeded


class CtlPlugin:
    """A class plugin: its state (how often `wipe` ran) is per daemon."""

    def __init__(self):
        self.wiped = 0

    @hookimpl
    def daemond_control_commands(self, daemon):
        def wipe(args):
            self.wiped += 1
            return {"wiped": self.wiped, "sessions": len(daemon.sessions())}

        def fail(args):
            raise CommandError("it failed on purpose", details={"why": "testing"})

        def crash(args):
            raise RuntimeError("crashed on purpose")

        def echo_args(args):
            return args

        def secret(args):
            if args["token"] is None:
                raise ArgumentNeeded("token", "secret: give the token", prompt=f"token for {args['user']}",
                                     confirm=True)
            if args["note"] is None:
                raise ArgumentNeeded("note", "secret: give a note")
            return f"{args['user']} got a token of {len(args['token'])} characters; note: {args['note']}"

        def count(args):
            for i in range(args["to"]):
                yield str(i + 1)

        return [
            ControlCommand("wipe", "forget everything (asks first)", wipe, confirm="Really wipe everything?"),
            ControlCommand("fail", "always fails", fail),
            ControlCommand("crash", "always raises", crash),
            ControlCommand("echo-args", "returns its arguments", echo_args, args=(
                Argument("word", "a positional word", required=True),
                Argument("times", "a number", option=True, short="t", type=int, default=1),
                Argument("loud", "a flag", flag=True),
                Argument("mode", "a choice", option=True, choices=("a", "b"), default="a"),
            )),
            ControlCommand("secret", "asks for what it lacks", secret, args=(
                Argument("user", "a name", required=True),
                Argument("token", "a secret", option=True, secret=True),
                Argument("note", "not a secret", option=True),
            )),
            ControlCommand("count", "streams 1..TO", count,
                           args=(Argument("to", "last number", option=True, type=int, default=3),)),
        ]

    @hookimpl
    def daemond_status(self, daemon):
        return {"wiped": self.wiped}
