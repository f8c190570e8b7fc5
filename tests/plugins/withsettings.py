"""A plugin with its own settings section, validated through its schema."""

from daemon import Field, Schema, hookimpl

SEEN = {}


@hookimpl
def daemond_settings_schema():
    return Schema({
        "greeting": Field(str, default="hi"),
        "times": Field(int, default=1, min=1, max=5),
    })


@hookimpl
def daemond_configure(settings):
    SEEN.update(settings)


@hookimpl
def daemond_session_open(session):
    for _ in range(SEEN["times"]):
        session.send_line(SEEN["greeting"])
