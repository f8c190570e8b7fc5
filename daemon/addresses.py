"""How daemond writes a network address for people: ``host:port``, ``[host]:port`` for IPv6.

One function, so that logs, ``status`` and error messages spell an address alike.
"""

from __future__ import annotations


def format_address(host: str, port: int) -> str:
    """``127.0.0.1:7000``, ``[::1]:7000``: brackets when the host has colons (IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
