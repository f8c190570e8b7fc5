"""A registration flood from another process (so it does not share the daemon's GIL):
``python -m tests.support.flood PORT ADDRESSES`` registers new names in a loop from
127.0.0.2 onwards, one thread per address, until its stdin closes; then prints a JSON
count of the final reply lines by their first two words."""

from __future__ import annotations

import itertools
import json
import socket
import sys
import threading
from collections import Counter


def main() -> None:
    port, addresses = int(sys.argv[1]), int(sys.argv[2])
    stop = threading.Event()
    finals: Counter[str] = Counter()
    names = itertools.count()

    def body(i: int) -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=60,
                                              source_address=(f"127.0.0.{2 + i}", 0)) as sock:
                    reader = sock.makefile("r", encoding="utf-8", newline="\n")
                    reader.readline()
                    sock.sendall(f"/register flood{next(names)}-{i} flood-password\n".encode())
                    final = reader.readline()
                    finals[" ".join(final.split()[:2]) or "(closed)"] += 1
            except OSError:
                finals["(error)"] += 1

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(addresses)]
    for t in threads:
        t.start()
    sys.stdin.read()
    stop.set()
    for t in threads:
        t.join(60)
    print(json.dumps(finals), flush=True)


if __name__ == "__main__":
    main()
