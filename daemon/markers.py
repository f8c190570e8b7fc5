"""The pluggy markers, created once for the whole project.

``hookspec`` marks the contract in :mod:`daemon.hookspecs`; plugins use
``hookimpl`` (import it as ``from daemon import hookimpl``).
"""

import pluggy

from daemon.version import PROJECT

#: Marks a function as a hook specification: the contract's own marker, used by
#: ``daemon/hookspecs.py``; a plugin never needs it. A ``pluggy.HookspecMarker``
#: for the project ``daemond``.
hookspec = pluggy.HookspecMarker(PROJECT)

#: Marks a plugin's function (or method) as a hook implementation: the function's
#: name says which hook (``daemond_…``), its arguments any subset of the hook's.
#: A ``pluggy.HookimplMarker`` for the project ``daemond``; ``@hookimpl(wrapper=True)``
#: and pluggy's other options work as in pluggy.
#:
#: Example::
#:
#:     from daemon import hookimpl
#:
#:     @hookimpl
#:     def daemond_session_open(session):
#:         session.send_line("+OK hello")
hookimpl = pluggy.HookimplMarker(PROJECT)
