"""What the benchmark runners share: finding the daemond to measure, and a TLS certificate.

The runners are scripts (``python bench/echo_bench.py``), so this module is
imported from the script's own directory.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def find_daemond(explicit: str | None = None) -> str | None:
    """``explicit`` if it names a command that exists; else the daemond installed next to this
    Python (the venv the runner was started with), else the one on PATH; None if none is found."""
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    beside = Path(sys.executable).parent / "daemond"
    if beside.exists():
        return str(beside)
    return shutil.which("daemond")


def make_certificate(tmp: Path, kind: str = "ec") -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1 with an ECDSA P-256
    ("ec") or RSA-2048 ("rsa") key, made for this run in `tmp` (removed
    afterwards): (cert, key)."""
    cert, key = tmp / f"cert-{kind}.pem", tmp / f"key-{kind}.pem"
    if shutil.which("openssl") is None:
        sys.exit("error: --tls needs the openssl command to make its certificate")
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
              else ["-newkey", "rsa:2048"])
    r = subprocess.run(
        ["openssl", "req", "-x509", *newkey,
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: openssl could not make the certificate: {r.stderr.strip()}")
    key.chmod(0o600)
    return cert, key
