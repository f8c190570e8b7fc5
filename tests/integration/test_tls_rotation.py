"""Certificates rotate by themselves (the reload thread watches their directories) and warn
before they expire (issue 22)."""

from __future__ import annotations

import datetime
import logging
import os
import time

import pytest

from tests.support.tls import Certs, fingerprint, tls_settings


@pytest.fixture
def certs(tmp_path):
    return Certs(tmp_path / "tls")


def served_fingerprint(certs, address) -> str:
    with certs.connect(address) as s:
        return fingerprint(s)


def wait_for_fingerprint(certs, address, other_than: str, timeout: float = 15.0) -> str:
    """The fingerprint a new connection gets, once it is no longer ``other_than`` (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        now = served_fingerprint(certs, address)
        if now != other_than or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def echo_once(sock, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def test_replacing_the_files_with_mv_rotates_without_a_reload_command(daemond_factory, certs):
    crt, key = certs.issue()
    d = daemond_factory({"e": {"plugins": ["echo"], "tls": tls_settings(crt, key)}}, reload={"debounce": 0.05})
    with certs.connect(d.address("e")) as live:
        first = fingerprint(live)
        new_crt, new_key = certs.issue("renewed")
        os.replace(new_key, key)
        os.replace(new_crt, crt)
        second = wait_for_fingerprint(certs, d.address("e"), first)
        assert second != first
        assert second == d.daemon.listeners["e"].tls_certificate["sha256"]
        assert echo_once(live, b"still mine\n") == b"still mine\n"  # the live connection keeps its own
        assert fingerprint(live) == first
    assert d.daemon.last_reload["source"] == "watch"


def test_a_certbot_style_symlink_swap_rotates(daemond_factory, certs, tmp_path):
    """certbot keeps archive/NAME/fullchainN.pem and swaps the symlinks in live/NAME/."""
    archive, live_dir = tmp_path / "le" / "archive" / "x", tmp_path / "le" / "live" / "x"
    archive.mkdir(parents=True)
    live_dir.mkdir(parents=True)
    for n in (1, 2):
        crt, key = certs.issue(f"v{n}")
        os.replace(crt, archive / f"fullchain{n}.pem")
        os.replace(key, archive / f"privkey{n}.pem")
    for name in ("fullchain", "privkey"):
        os.symlink(f"../../archive/x/{name}1.pem", live_dir / f"{name}.pem")
    d = daemond_factory({"e": {"plugins": ["echo"], "tls": tls_settings(live_dir / "fullchain.pem",
                                                                         live_dir / "privkey.pem")}},
                        reload={"debounce": 0.05})
    with certs.connect(d.address("e")) as live:
        first = fingerprint(live)
        for name in ("privkey", "fullchain"):  # certbot: a new symlink, renamed over the old one
            tmp = live_dir / f".{name}.new"
            os.symlink(f"../../archive/x/{name}2.pem", tmp)
            os.replace(tmp, live_dir / f"{name}.pem")
        second = wait_for_fingerprint(certs, d.address("e"), first)
        assert second != first
        assert echo_once(live, b"kept\n") == b"kept\n"
        assert fingerprint(live) == first


def test_a_certificate_near_its_end_is_warned_of_at_start_and_each_day(daemond_factory, certs, caplog):
    caplog.set_level(logging.INFO, logger="daemond")
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=5)
    crt, key = certs.issue("soon", not_after=soon)
    d = daemond_factory({"e": {"plugins": ["echo"], "tls": tls_settings(crt, key)}})
    warnings = [r for r in caplog.records if "expires on" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "in 4." in warnings[0].getMessage() or "in 5.0" in warnings[0].getMessage()
    d.daemon.reload()  # the same certificate: not again the same day
    assert len([r for r in caplog.records if "expires on" in r.getMessage()]) == 1
    d.daemon.daily_checks()  # what the reload thread calls once a day
    assert len([r for r in caplog.records if "expires on" in r.getMessage()]) == 2


def test_a_certificate_far_from_its_end_is_not_warned_of(daemond_factory, certs, caplog):
    caplog.set_level(logging.INFO, logger="daemond")
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=15)
    crt, key = certs.issue("later", not_after=later)
    d = daemond_factory({"e": {"plugins": ["echo"], "tls": tls_settings(crt, key)}})
    d.daemon.daily_checks()
    assert "expires on" not in caplog.text
