#!/usr/bin/env python3
"""Baseline: stdlib socketserver.ThreadingTCPServer echo server.

Serves until killed.  Usage: baseline_socketserver.py [HOST] [PORT]
The only change from the stdlib defaults is the listen backlog
(request_queue_size 5 -> socket.SOMAXCONN, the same as the other servers),
so that opening 10,000 connections measures the server, not SYN retries.
"""
import argparse
import socket
import socketserver


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn = self.request
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN


class Server6(Server):
    address_family = socket.AF_INET6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("host", nargs="?", default="127.0.0.1")
    ap.add_argument("port", nargs="?", type=int, default=9000)
    args = ap.parse_args()
    cls = Server6 if ":" in args.host else Server
    with cls((args.host, args.port), EchoHandler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
