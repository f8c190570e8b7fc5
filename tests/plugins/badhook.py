"""A plugin with a misspelt hook name: loading it must fail, naming it."""

from daemon import hookimpl


@hookimpl
def daemond_sesion_open(session):
    pass
