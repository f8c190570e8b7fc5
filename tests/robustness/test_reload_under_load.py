"""Item 19: bad edits of the config while 200 clients are connected and talking: refused, nobody dropped."""

from __future__ import annotations

import threading

from tests.support.robustness import connect, wait_until


def test_bad_config_edits_under_load_with_200_clients_keep_everyone_served(daemond_factory):
    # Bound: reload.debounce (default 0.25 s; 0.05 here). Every bad edit is refused
    # with its position, the last good config stays, and all 200 clients keep their
    # connection and every byte while 4 of them echo without pause.
    d = daemond_factory({"e": {"plugins": ["echo"]}}, reload={"debounce": 0.05})
    daemon, path = d.daemon, d.config_path
    clients = [connect(d.address("e")) for _ in range(200)]
    for i, s in enumerate(clients):
        s.sendall(b"hello %d\n" % i)
    for i, s in enumerate(clients):
        want = b"hello %d\n" % i
        got = b""
        while len(got) < len(want):
            got += s.recv(64)
        assert got == want
    stop = threading.Event()
    echoed = [0] * 4
    failures: list[str] = []

    def talk(k):
        s = clients[k]
        n = 0
        while not stop.is_set():
            msg = b"%d:%d;" % (k, n)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(64)
                if not chunk:
                    failures.append(f"client {k} closed")
                    return
                got += chunk
            if got != msg:
                failures.append(f"client {k}: {got!r} != {msg!r}")
                return
            n += 1
        echoed[k] = n

    talkers = [threading.Thread(target=talk, args=(k,), name=f"test-talker-{k}") for k in range(4)]
    for t in talkers:
        t.start()
    good = path.read_text()
    try:
        for i, text in enumerate((good + "\n  : [\n", good + "colour: red\n", good[: len(good) // 2], "",
                                  good.replace("plugins:\n    - echo", "plugins:\n    - no-such-plugin"),
                                  good.replace("port: 0", "port: 99999"))):
            before = daemon.last_reload
            # saved the way editors do (a new file renamed over the old), each edit distinct:
            # the reloader skips content it has seen, so a read mid-write must not match a later edit
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(f"# edit {i}\n" + text)
            tmp.replace(path)
            assert wait_until(lambda: daemon.last_reload is not before, 30), text
            assert daemon.last_reload["ok"] is False and daemon.last_reload["errors"], daemon.last_reload
    finally:
        stop.set()
        for t in talkers:
            t.join(10)
    assert not failures, failures
    assert all(echoed), echoed
    assert daemon.listeners["e"].connection_count() == 200
    for i, s in enumerate(clients):  # nobody was dropped or lost a byte
        s.sendall(b"after %d\n" % i)
        want = b"after %d\n" % i
        got = b""
        while len(got) < len(want):
            got += s.recv(64)
        assert got == want
    path.write_text(good.replace("level: debug", "level: info"))
    assert wait_until(lambda: daemon.last_reload["ok"], 30)
    for s in clients:
        s.close()
