"""The hashing helper's program: argon2id in a process of its own.

Run by the daemon as ``python -P worker.py CONFIG``; CONFIG is JSON: the argon2
parameters and the *channels*, pairs of inherited pipe descriptors (requests in,
replies out), one thread each. A request is one JSON line, ``["hash", password]``
or ``["verify", hash, password]``, answered by one JSON line, ``{"ok": result}``
or ``{"error": text}``. Passwords travel only through those pipes, never the
command line, the environment or a file. It imports nothing of daemond, so it
runs as a plain script from any installation.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import argon2
from argon2.exceptions import InvalidHashError, VerificationError


def main(argv: list[str]) -> int:
    # The daemon's threads block SIGTERM and friends and we inherit that: take the default
    # mask, so `kill PID` works. Ctrl-C at the daemon's console is the daemon's business.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(argv[1])
    # The daemon sets our CPUs and nice (per thread on Linux) on this thread, then closes our
    # stdin: the threads started after that inherit them.
    sys.stdin.buffer.read()
    hasher = argon2.PasswordHasher(**config["params"], type=argon2.Type.ID)
    threads = [threading.Thread(target=serve, args=(hasher, requests, replies), name=f"channel-{requests}")
               for requests, replies in config["channels"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


def serve(hasher: argon2.PasswordHasher, request_fd: int, reply_fd: int) -> None:
    """Answer one channel's requests, one at a time, until the daemon closes it."""
    with os.fdopen(request_fd, "rb") as requests, os.fdopen(reply_fd, "wb", buffering=0) as replies:
        for line in requests:
            try:
                answer = {"ok": handle(hasher, json.loads(line))}
            except Exception as exc:  # answered, never printed: a message could carry what it was given
                answer = {"error": type(exc).__name__}
            try:
                replies.write(json.dumps(answer).encode() + b"\n")  # < PIPE_BUF: one whole write
            except BrokenPipeError:
                return


def handle(hasher: argon2.PasswordHasher, request: list):
    op = request[0]
    if op == "hash":
        return hasher.hash(request[1])
    if op == "verify":
        try:
            return hasher.verify(request[1], request[2])
        except (VerificationError, InvalidHashError):
            return False
    raise ValueError("unknown request")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
