"""daemond's version and the name its pluggy markers carry (imported by the public ``daemon`` module)."""

#: daemond's version (a string, as in its package metadata).
__version__ = "0.1.0"

#: The project name pluggy markers carry (``"daemond"``); hook names start with ``daemond_``
#: and plugins register under the entry-point group ``daemond.plugins``.
PROJECT = "daemond"
