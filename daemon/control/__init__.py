"""The control plane: the command registry's two front doors (the Unix control socket and the console).

``protocol`` is imported by ``daemonctl`` and must stay standard-library only.
"""
