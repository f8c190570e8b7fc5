"""daemond's version and the name its pluggy markers carry (imported by the public ``daemon`` module)."""

__version__ = "0.1.0"

#: The project name pluggy markers carry; hook names start with ``daemond_``.
PROJECT = "daemond"
