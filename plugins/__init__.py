"""daemond's built-in plugins.

Each registers in the ``daemond.plugins`` entry-point group (see
pyproject.toml) and is loaded exactly like a third-party plugin; the core
never imports this package.
"""
