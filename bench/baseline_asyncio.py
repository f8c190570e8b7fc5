#!/usr/bin/env python3
"""Baseline: asyncio echo server, streams (reader.read / writer.write / drain) by default.

Serves until killed.  Usage: baseline_asyncio.py [HOST] [PORT] [--protocol] [--uvloop] [--cert CERT --key KEY]
``--protocol``: an ``asyncio.Protocol`` whose ``data_received`` calls ``transport.write`` (no
streams, no coroutine per connection: the fastest pure-asyncio echo). ``--uvloop``: the same
Protocol on uvloop's event loop (``pip install -e '.[bench]'``).
With --cert/--key it speaks TLS: ``asyncio.start_server(..., ssl=ctx)`` with a
default server context (TLS 1.2 minimum, as daemond's default).
The listen backlog is socket.SOMAXCONN, the same as the other servers.
"""
import argparse
import asyncio
import socket
import ssl


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve(host: str, port: int, ctx: ssl.SSLContext | None = None, protocol: bool = False) -> None:
    if protocol:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoProtocol, host, port, backlog=socket.SOMAXCONN, ssl=ctx)
    else:
        server = await asyncio.start_server(handle, host, port, backlog=socket.SOMAXCONN, ssl=ctx)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("host", nargs="?", default="127.0.0.1")
    ap.add_argument("port", nargs="?", type=int, default=9000)
    ap.add_argument("--cert", help="TLS certificate chain (PEM); with --key: speak TLS")
    ap.add_argument("--key", help="TLS private key (PEM)")
    ap.add_argument("--protocol", action="store_true", help="an asyncio.Protocol instead of streams")
    ap.add_argument("--uvloop", action="store_true", help="the Protocol on uvloop's event loop")
    args = ap.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
    main_coro = serve(args.host, args.port, ctx, protocol=args.protocol or args.uvloop)
    if args.uvloop:
        import uvloop  # the bench extra
        uvloop.run(main_coro)
    else:
        asyncio.run(main_coro)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
