"""TLS on a listener (issue 22), with real clients: Python's ssl, openssl s_client and socat."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time

import pytest

from tests.support.tls import Certs, fingerprint, read_exactly, s_client, socat_from_docs, tls_settings


@pytest.fixture
def certs(tmp_path):
    return Certs(tmp_path / "tls")


def echo_tls(certs, **tls) -> dict:
    crt, key = certs.issue()
    return {"e": {"plugins": ["echo"], "tls": tls_settings(crt, key, **tls)}}


def exchange(sock, payload: bytes, window: int = 256 * 1024) -> bytes:
    """Send ``payload`` and read its echo on one thread (an SSLSocket must not be read and written
    by two threads at once), never more than ``window`` bytes behind; return what came back."""
    received = bytearray()
    view = memoryview(payload)
    for i in range(0, len(view), 65536):
        sock.sendall(view[i:i + 65536])
        while len(received) < min(len(payload), i + 65536) - window:
            received.extend(sock.recv(1 << 20) or b"?")
    while len(received) < len(payload):
        data = sock.recv(1 << 20)
        if not data:
            break
        received.extend(data)
    return bytes(received)


def test_echo_over_tls_is_byte_exact_both_ways(daemond_factory, certs, caplog):
    caplog.set_level(logging.INFO, logger="daemond")
    d = daemond_factory(echo_tls(certs))
    payload = b"\0\r\n" + os.urandom(4 * 1024 * 1024) + b"\0"
    with certs.connect(d.address("e"), timeout=30) as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        assert exchange(s, payload) == payload
        s.sendall(b"")
    assert "TLSv1.3 TLS_" in caplog.text  # the connect line names the version and cipher


def test_openssl_s_client_echoes_and_verifies_the_chain(daemond_factory, certs):
    d = daemond_factory(echo_tls(certs))
    client = s_client(d.address("e"), certs.ca_file)
    try:
        client.stdin.write(b"hello\0world\n")
        client.stdin.flush()
        assert read_exactly(client.stdout, 12) == b"hello\0world\n"
    finally:
        client.kill()
        client.communicate()


def test_the_socat_command_of_the_docs_echoes_and_verifies_the_chain(daemond_factory, certs, tmp_path):
    crt, key = certs.issue(also=("127.0.0.1",))  # docs/tls.md's certificate names 127.0.0.1 too
    d = daemond_factory({"e": {"plugins": ["echo"], "tls": tls_settings(crt, key)}})
    client = socat_from_docs(d.address("e"), certs.ca_file)
    try:
        client.stdin.write(b"hello\0world\n")
        client.stdin.flush()
        assert read_exactly(client.stdout, 12) == b"hello\0world\n"
        client.stdin.close()  # socat sends close_notify; the daemon closes in turn
        assert client.wait(10) == 0
    finally:
        client.kill()
        client.wait()
    # and socat really verifies: a CA that did not sign the daemon's certificate is refused
    stranger = Certs(tmp_path / "stranger")
    client = socat_from_docs(d.address("e"), stranger.ca_file)
    try:
        _, err = client.communicate(b"hello\n", timeout=10)
    finally:
        client.kill()
    assert client.returncode != 0
    assert b"certificate verify failed" in err


def test_plaintext_bytes_on_a_tls_port_are_closed_with_one_log_line(daemond_factory, certs, caplog):
    caplog.set_level(logging.INFO, logger="daemond")
    d = daemond_factory(echo_tls(certs))
    with socket.create_connection(d.address("e"), timeout=10) as s:
        s.sendall(b"hello there\n")
        assert s.recv(100) == b""
    deadline = time.monotonic() + 30
    while "not TLS" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [r for r in caplog.records if "e 127.0.0.1" in r.getMessage()]
    assert [r.getMessage().split(": ", 1)[1] for r in lines] == ["not TLS (plaintext bytes on a TLS listener); closed"]
    assert not any(r.exc_info for r in caplog.records)


def test_a_client_hello_on_a_plaintext_listener_is_named_in_the_log(daemond_factory, certs, caplog):
    caplog.set_level(logging.INFO, logger="daemond")
    d = daemond_factory({"p": {"plugins": ["echo"]}})
    with pytest.raises((ssl.SSLError, OSError)):
        with certs.connect(d.address("p")):
            pass
    deadline = time.monotonic() + 30
    while "tls-on-plaintext" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS handshake on a plaintext listener" in caplog.text


def test_tls_1_1_is_refused(daemond_factory, certs, caplog):
    caplog.set_level(logging.INFO, logger="daemond")
    d = daemond_factory(echo_tls(certs))
    old = certs.client_context(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer TLS 1.1 at all
    with pytest.raises((ssl.SSLError, OSError)):
        with certs.connect(d.address("e"), context=old):
            pass
    deadline = time.monotonic() + 30
    while "TLS handshake failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "TLS handshake failed" in caplog.text  # the server saw it and said no
    with certs.connect(d.address("e")) as s:  # a TLS 1.2+ client still gets in
        assert exchange(s, b"ok\n") == b"ok\n"


def test_min_version_tls13_refuses_tls12(daemond_factory, certs):
    d = daemond_factory(echo_tls(certs, min_version="TLSv1.3"))
    with pytest.raises((ssl.SSLError, OSError)):
        with certs.connect(d.address("e"), context=certs.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)):
            pass
    with certs.connect(d.address("e")) as s:
        assert s.version() == "TLSv1.3"


def test_silent_clients_time_out_while_a_real_client_is_served(daemond_factory, certs, caplog):
    caplog.set_level(logging.INFO, logger="daemond")
    d = daemond_factory(echo_tls(certs, handshake_timeout=2))
    silent = [socket.create_connection(d.address("e"), timeout=20) for _ in range(200)]
    try:
        with certs.connect(d.address("e"), timeout=10) as s:  # handshakes at once, not after the silent ones
            assert exchange(s, b"through\n") == b"through\n"
        for sock in silent:  # each is closed by the daemon at its handshake_timeout
            assert sock.recv(10) == b""
    finally:
        for sock in silent:
            sock.close()
    deadline = time.monotonic() + 30
    while caplog.text.count("TLS handshake timed out") < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert caplog.text.count("TLS handshake timed out") == 200
    # each is logged, closed, then let go by the listener: the last may still be counted a moment
    while d.daemon.listeners["e"].connection_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert d.daemon.listeners["e"].connection_count() == 0


def test_a_tls_reader_that_stops_reading_is_cut_and_broadcasts_do_not_wait(daemond_factory, certs):
    d = daemond_factory(echo_tls(certs, handshake_timeout=5) and {
        "e": {"plugins": ["echo"], "send_queue": 65536, "tls": tls_settings(*certs.issue("cut"))}})
    with certs.connect(d.address("e")) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        [session] = d.daemon.listeners["e"].sessions()
        deadline = time.monotonic() + 10
        while session.tls is None and time.monotonic() < deadline:  # the server's side of the handshake
            time.sleep(0.01)
        chunk = b"x" * 16384
        started = time.monotonic()
        for _ in range(2000):  # another thread's writes never block on a reader that does not read
            if not session.write(chunk):
                break
        assert time.monotonic() - started < 30
        deadline = time.monotonic() + 10
        while session.end_reason is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session.end_reason == "overflow"


def test_status_shows_the_certificate(daemond_factory, certs):
    d = daemond_factory(echo_tls(certs))
    with certs.connect(d.address("e")) as s:
        served = fingerprint(s)
    [lst] = d.control("status")["result"]["listeners"]
    cert = lst["tls"]["certificate"]
    assert cert["sha256"] == served
    assert "trustme" in cert["issuer"] and cert["days_left"] > 300 and cert["not_after"]
    assert lst["tls"]["error"] is None


def test_rotation_by_replacing_the_files_and_a_mismatched_pair_kept_out(daemond_factory, certs):
    d = daemond_factory(echo_tls(certs))
    crt, key = d.daemon.listeners["e"].config.tls.cert, d.daemon.listeners["e"].config.tls.key
    with certs.connect(d.address("e")) as live:
        first = fingerprint(live)
        new_crt, new_key = certs.issue("renewed")
        os.replace(new_key, key)  # mv, as an operator (or certbot's deploy) would
        os.replace(new_crt, crt)
        report = d.daemon.reload()
        assert report["ok"], report
        with certs.connect(d.address("e")) as s:
            second = fingerprint(s)
        assert second != first
        assert exchange(live, b"still here\n") == b"still here\n"  # live connections keep theirs
    other_crt, _ = certs.issue("other")
    os.replace(other_crt, crt)  # a certificate whose key is not the one in place
    report = d.daemon.reload()
    assert "does not match" in " ".join(report.get("errors", [])) or not report["ok"], report
    with certs.connect(d.address("e")) as s:
        assert fingerprint(s) == second  # the good pair stays in use


def test_echo_over_tls_is_byte_exact_at_20_mib_both_ways(daemond_factory, certs):
    d = daemond_factory(echo_tls(certs))
    payload = bytes(range(256)) * (20 * 4096)  # 20 MiB, every byte value (NUL included)
    payload = payload[:1000] + b"\0" * 4096 + os.urandom(len(payload) - 1000 - 4096 - 1) + b"\0"
    assert len(payload) == 20 * 1024 * 1024
    with certs.connect(d.address("e"), timeout=60) as s:
        assert exchange(s, payload, window=1024 * 1024) == payload


def test_half_close_client_close_notify_then_the_daemons_close_notify_and_fin(daemond_factory, certs):
    """The client says close_notify right behind its last bytes: their echo still comes, then the
    daemon's close_notify, then the TCP FIN."""
    d = daemond_factory(echo_tls(certs))
    context = certs.client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(d.address("e"), timeout=10) as raw:
        while True:  # the handshake, by hand
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                data = raw.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        raw.sendall(outgoing.read())
        tls.write(b"last words\0\n")
        try:
            tls.unwrap()  # our close_notify
        except ssl.SSLWantReadError:
            pass
        raw.sendall(outgoing.read())
        received, closed_notify = bytearray(), False
        while True:
            data = raw.recv(65536)
            if not data:
                break  # the FIN
            assert not closed_notify, "bytes after the daemon's close_notify"
            incoming.write(data)
            while not closed_notify:
                try:
                    received.extend(tls.read(65536))
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    closed_notify = True
        assert bytes(received) == b"last words\0\n"
        assert closed_notify, "the FIN came without the daemon's close_notify"
