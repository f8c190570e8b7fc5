#!/usr/bin/env python3
"""Baseline: asyncio streams echo server (reader.read / writer.write / drain).

Serves until killed.  Usage: baseline_asyncio.py [HOST] [PORT] [--cert CERT --key KEY]
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


async def serve(host: str, port: int, ctx: ssl.SSLContext | None = None) -> None:
    server = await asyncio.start_server(handle, host, port, backlog=socket.SOMAXCONN, ssl=ctx)
    async with server:
        await server.serve_forever()


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
    asyncio.run(serve(args.host, args.port, ctx))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
