"""How daemond writes a network address for people: ``host:port``, ``[host]:port`` for IPv6.

One function, so that logs, ``status`` and error messages spell an address alike.
"""

from __future__ import annotations


def format_address(host: str, port: int) -> str:
    """``127.0.0.1:7000``, ``[::1]:7000``: brackets when the host has colons (IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_without_password(url: str) -> str:
    """``url`` with any password masked (``redis://:****@host:6379/0``; a ``password=`` in the
    query too), for status, logs and reload messages."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:****@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "****" if k.lower() == "password" else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if not netloc and url.startswith(f"{parts.scheme}://"):  # unix:///path keeps its empty host
        shown = f"{parts.scheme}://{shown[len(parts.scheme) + 1:]}"
    return shown

