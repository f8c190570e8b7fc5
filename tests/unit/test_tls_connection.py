"""TlsConnection.recv on its own: plaintext held inside the SSLObject is never left behind."""

from __future__ import annotations

import socket
import ssl
import threading

from daemon.outbox import Flusher
from daemon.tls import SealingOutbox, TlsConnection
from tests.support.tls import Certs


def test_a_read_smaller_than_a_record_gets_the_rest_without_waiting_for_the_socket(tmp_path):
    # recv asks the SSLObject only when it may hold plaintext; after a read that filled its
    # size the rest of the record is inside the SSLObject, with nothing left in the BIO or socket
    certs = Certs(tmp_path)
    crt, key = certs.issue()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    server, client = socket.socketpair()
    server.settimeout(5)  # a recv that waits for the socket here fails the test
    flusher = Flusher()
    flusher.start()
    sent = threading.Event()

    def peer():
        with certs.client_context().wrap_socket(client, server_hostname="localhost") as tls_client:
            for chunk in (b"a" * 100, b"b" * 100, b"c" * 100):  # three records
                tls_client.sendall(chunk)
            sent.set()
            tls_client.recv(1)  # until the test is done

    thread = threading.Thread(target=peer)
    thread.start()
    try:
        tls = TlsConnection(context, server)
        SealingOutbox(tls, server, flusher, 1 << 20)
        tls.handshake(lambda: server.recv(65536))
        assert sent.wait(5)
        got = b""
        while len(got) < 300:
            got += tls.recv(10)
        assert got == b"a" * 100 + b"b" * 100 + b"c" * 100
        tls.outbox.write(b"!")
    finally:
        thread.join(5)
        server.close()
        flusher.stop()
