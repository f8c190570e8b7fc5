"""Plugins used only by the tests, loaded by dotted path (``tests.plugins.NAME``)."""
