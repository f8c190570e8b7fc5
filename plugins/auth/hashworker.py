"""The auth plugin's hashing helper: argon2id in a process of its own.

Started by :class:`plugins.auth.passwords.Hasher` as ``python -P hashworker.py CONFIG``,
where CONFIG is JSON: the argon2 parameters and its *channels*, pairs of pipe descriptors
(requests in, replies out) it inherited. Each channel gets a thread. The daemon moves it to
its CPUs and lowers its priority as it starts, then closes its stdin: only then does it start
its threads. A request is one JSON array per line, ``["hash", password]`` or
``["verify", hash, password]``; each gets one JSON line back, ``{"ok": result}`` or
``{"error": text}``. The helper ends when the daemon closes its channels, or exits (the
pipes close with it). Passwords only ever travel through those pipes: never the command
line, the environment or a file.

It imports nothing of daemond, only the standard library and argon2-cffi, so it runs as a
plain script from any installation.
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
    # A daemon thread that starts us has SIGTERM and friends blocked (the daemon's main thread
    # handles them), and we would inherit that: take the default mask, so `kill PID` works.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # Ctrl-C at the daemon's console reaches its whole process group; stopping is the
    # daemon's business, and it ends this process by closing the channels.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(argv[1])
    # The daemon sets our CPUs, nice and time slice, which Linux keeps per thread, on this
    # thread; it closes our stdin once done, and the threads started after inherit them.
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
    """One request's answer (also how the daemon hashes when no helper can run)."""
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
