"""How the daemon writes a network address: ``host:port``, IPv6 hosts in brackets."""

from __future__ import annotations


def format_address(host: str, port: int) -> str:
    """``127.0.0.1:9090``, ``[::1]:9090``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
