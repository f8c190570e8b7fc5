"""Certificates made by the tests (trustme: a throwaway CA per test, never a committed key)
and TLS clients that nobody here wrote: Python's ``ssl``, ``openssl s_client`` and ``socat``."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

trustme = pytest.importorskip("trustme")


class Certs:
    """A test CA and the files a listener's ``tls:`` names."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, name: str = "server", *, hostname: str = "localhost", not_after=None,
              also: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """Write ``name.crt`` (chain) and ``name.key`` (mode 600) for ``hostname`` and the names or
        addresses in ``also``; return their paths."""
        kwargs = {"not_after": not_after} if not_after is not None else {}
        cert = self.ca.issue_cert(hostname, *also, **kwargs)
        crt, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        crt.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key.write_bytes(cert.private_key_pem.bytes())
        os.chmod(key, 0o600)
        return crt, key

    def expired(self, name: str = "expired") -> tuple[Path, Path]:
        return self.issue(name, not_after=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1))

    def client_context(self, **kwargs) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        for name, value in kwargs.items():
            setattr(context, name, value)
        return context

    def connect(self, address, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
        raw = socket.create_connection(address, timeout=timeout)
        return (context or self.client_context()).wrap_socket(raw, server_hostname="localhost")


def fingerprint(tls_sock: ssl.SSLSocket) -> str:
    import hashlib
    return ":".join(f"{b:02X}" for b in hashlib.sha256(tls_sock.getpeercert(binary_form=True)).digest())


def tls_settings(crt: Path, key: Path, **extra) -> dict:
    return {"cert": str(crt), "key": str(key), **extra}


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    return path


def s_client(address, ca_file: Path, *extra: str) -> subprocess.Popen:
    """``openssl s_client`` to ``address``, verifying the chain; its stdin and stdout are pipes.
    (It sends close_notify and stops reading at its stdin's end: keep stdin open while reading.)"""
    host, port = address
    return subprocess.Popen([openssl(), "s_client", "-connect", f"{host}:{port}", "-servername", "localhost",
                             "-CAfile", str(ca_file), "-verify_return_error", "-quiet", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def socat_from_docs(address, ca_file: Path) -> subprocess.Popen:
    """The ``socat`` command docs/tls.md shows, run against ``address`` with ``ca_file`` as its
    ``cafile``; its stdin and stdout are pipes."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "tls.md").read_text()
    lines = [line for line in docs.splitlines() if line.startswith("socat ")]
    assert len(lines) == 1, f"docs/tls.md shows {len(lines)} socat commands, expected one"
    argv = lines[0].split()
    assert argv[-1] == "OPENSSL:127.0.0.1:6697,cafile=fullchain.pem", argv  # what is substituted below
    host, port = address
    argv[-1] = f"OPENSSL:{host}:{port},cafile={ca_file}"
    path = shutil.which("socat")
    if path is None:
        pytest.skip("socat is not installed (apt-get install socat)")
    return subprocess.Popen([path, *argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_exactly(stream, n: int, timeout: float = 20.0) -> bytes:
    """``n`` bytes from a pipe, or fewer if it ends or ``timeout`` passes."""
    import selectors
    got = bytearray()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while len(got) < n and sel.select(max(0.0, deadline - time.monotonic())):
            chunk = os.read(stream.fileno(), n - len(got))
            if not chunk:
                break
            got.extend(chunk)
    return bytes(got)
