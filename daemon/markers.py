"""The pluggy markers, created once for the whole project.

``hookspec`` marks the contract in :mod:`daemon.hookspecs`; plugins use
``hookimpl`` (import it as ``from daemon import hookimpl``).
"""

import pluggy

from daemon.version import PROJECT

#: Marks a function as a hook specification (used only by :mod:`daemon.hookspecs`).
hookspec = pluggy.HookspecMarker(PROJECT)

#: Marks a plugin's function as a hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT)
