#!/usr/bin/env python3
"""Baseline: bare thread-per-connection echo server.

An accept loop and one threading.Thread per client doing recv/sendall.
Serves until killed.  Usage: baseline_threads.py [HOST] [PORT] [--cert CERT --key KEY]
With --cert/--key it speaks TLS: each client's thread wraps its accepted socket
with ``ctx.wrap_socket(conn, server_side=True)`` (the handshake runs on that
thread, as in daemond), then does the same recv/sendall loop.  In TLS mode it
sets TCP_NODELAY on accepted sockets, as daemond does (and asyncio): without
it, the small writes of a TLS 1.3 handshake (session tickets, then the first
reply) meet delayed ACKs and a handshake takes ~40 ms.
"""
import argparse
import socket
import ssl
import threading


def handle(conn: socket.socket, ctx: ssl.SSLContext | None = None) -> None:
    if ctx is not None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
    with conn:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("host", nargs="?", default="127.0.0.1")
    ap.add_argument("port", nargs="?", type=int, default=9000)
    ap.add_argument("--cert", help="TLS certificate chain (PEM); with --key: speak TLS")
    ap.add_argument("--key", help="TLS private key (PEM)")
    args = ap.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(socket.SOMAXCONN)
    while True:
        try:
            conn, _ = srv.accept()
        except OSError:
            continue
        threading.Thread(target=handle, args=(conn, ctx), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
