"""chat on a cluster (docs/cluster.md): real daemond nodes sharing rooms through a real redis-server.

Users spread over the nodes are in the same rooms: each room has one order that every member on
every node sees, /who, /rooms, topics and /msg work across nodes, a duplicate login is found on
another node, a node killed with kill -9 has its users parted by the others, and with Redis gone a
message is refused (-ERR unavailable), never lost, then the rooms go on with no gap or repeat."""

from __future__ import annotations

import shutil
import signal
import threading
import time

import pytest

from daemon.testing import LineClient
from tests.support.auth import auth_settings

PASSWORD = "correct horse"
LISTENERS = {"chat": {"plugins": ["auth", "chat"]}}


@pytest.fixture
def nodes(daemond_process, redis_server):
    """start(count, node_timeout=…, **chat settings) -> the nodes, each with a listener ``chat`` (auth, chat)."""

    made = []

    def start(count: int = 3, node_timeout: float = 10, **chat):
        plugins = {"auth": auth_settings(), "chat": {"rate": 0, **chat}}
        for _ in range(count):
            made.append(daemond_process(LISTENERS, plugins, cluster={
                "redis": redis_server.url, "node": f"n{len(made)}", "prefix": "t:", "node_timeout": node_timeout}))
        return made[-count:]

    return start


class Chatter:
    """A line-protocol chat user on one node."""

    def __init__(self, node, name: str, register: bool = True):
        self.name = name
        self.events: list[str] = []  # room events read while waiting for a command's reply
        self.client: LineClient = node.client("chat", timeout=10)
        greeting = self.client.read_line()
        assert greeting.startswith("+OK "), greeting
        # chat's lines of the login (the replay) are data lines of its reply
        self.replay, self.reply = self.client.command(f"/{'register' if register else 'login'} {name} {PASSWORD}")

    def ok(self) -> Chatter:
        assert self.reply.startswith("+OK"), self.reply
        return self

    def send(self, line: str) -> None:
        self.client.send_line(line)

    def command(self, line: str) -> tuple[list[str], str]:
        """Send a command; (data lines, the +OK/-ERR line), skipping room events that came meanwhile."""
        self.client.send_line(line)
        data = []
        while True:
            got = self.client.read_line()
            if got.startswith(("+OK", "-ERR")):
                return data, got
            if got.startswith(("MSG ", "JOIN ", "PART ", "ACTION ", "TOPIC ", "PRIV ", "NOTICE ")):
                self.events.append(got)  # kept for wait_for
            else:
                data.append(got)

    def wait_for(self, wanted: str, timeout: float = 10) -> list[str]:
        """Read lines until ``wanted``; every line read, ``wanted`` last."""
        seen = []
        while self.events:  # those a command's reply came after first
            seen.append(self.events.pop(0))
            if seen[-1] == wanted:
                return seen
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"{self.name} never got {wanted!r}; got {seen}"
            line = self.client.read_line()
            seen.append(line)
            if line == wanted:
                return seen

    def close(self) -> None:
        self.client.close()


def test_users_on_three_nodes_share_the_lobby(nodes):
    a, b, c = nodes()
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    carol = Chatter(c, "carol").ok()
    alice.wait_for("JOIN carol")
    bob.wait_for("JOIN carol")
    alice.send("hello from a")
    assert bob.wait_for("MSG alice hello from a")[-1] and carol.wait_for("MSG alice hello from a")
    assert carol.command("/who") == ([], "+OK alice bob carol")
    assert bob.command("/msg carol psst") == ([], "+OK")
    carol.wait_for("PRIV bob psst")
    assert alice.command("/msg nobody hi")[1].startswith("-ERR no-such-user")
    bob.close()
    alice.wait_for("PART bob")
    carol.wait_for("PART bob")
    dave = Chatter(b, "dave").ok()
    assert len(dave.replay) == 1 and dave.replay[0].endswith(" alice hello from a"), dave.replay
    history, done = dave.command("/history 5")
    assert done == "+OK 1" and len(history) == 1 and history[0].endswith(" alice hello from a"), history


def test_one_order_per_room_under_eight_senders_on_three_nodes(nodes):
    three = nodes()
    watchers = [Chatter(node, f"watch{i}").ok() for i, node in enumerate(three)]
    senders = [Chatter(three[i % 3], f"s{i}").ok() for i in range(8)]
    per_sender = 25
    start = threading.Barrier(len(senders))

    def speak(sender: Chatter) -> None:
        start.wait()
        for n in range(per_sender):
            sender.send(f"{sender.name} line {n}")

    threads = [threading.Thread(target=speak, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    total = len(senders) * per_sender
    orders = []
    for watcher in watchers:
        lines = []
        deadline = time.monotonic() + 30
        while len(lines) < total:
            assert time.monotonic() < deadline, f"{watcher.name} got {len(lines)} of {total}"
            line = watcher.client.read_line()
            if line.startswith("MSG "):
                lines.append(line)
        orders.append(lines)
    assert orders[0] == orders[1] == orders[2]  # one order, whichever node a member is on
    for sender in senders:  # nothing lost, and each sender's lines in the order sent
        mine = [line for line in orders[0] if line.startswith(f"MSG {sender.name} ")]
        assert mine == [f"MSG {sender.name} {sender.name} line {n}" for n in range(per_sender)]
    history, done = watchers[1].command(f"/history {total}")
    assert done == f"+OK {total}"
    assert [h.split(" ", 2)[2] for h in history] == [m[len("MSG "):] for m in orders[0]]


def test_rooms_topics_and_who_across_nodes(nodes):
    a, b = nodes(2)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    assert alice.command("/join #Dev") == ([], "+OK")
    data, done = bob.command("/rooms")
    assert done == "+OK" and data == ["ROOM #Dev 1", "ROOM #lobby 2"], data
    assert bob.command("/join #dev") == ([], "+OK")
    alice.wait_for("JOIN #Dev bob")
    bob.send("in dev")
    alice.wait_for("MSG #Dev bob in dev")
    assert alice.command("/topic #dev ship it") == ([], "+OK")
    bob.wait_for("TOPIC #Dev alice ship it")
    assert bob.command("/topic #dev") == ([], "+OK ship it")
    assert bob.command("/who #dev") == ([], "+OK alice bob")
    data, done = alice.command("/join #late")
    assert done == "+OK"
    carol = Chatter(b, "carol").ok()
    data, done = carol.command("/join #dev")
    assert done == "+OK" and data[-1].endswith(" bob in dev") and data[-1].startswith("HIST #Dev "), data
    assert alice.command("/part #dev") == ([], "+OK")
    bob.wait_for("PART #Dev alice")
    assert a.ctl("rooms", "delete", "dev", "--yes").returncode == 0
    bob.wait_for("PART #Dev bob")
    assert bob.command("/say #dev hello")[1].startswith("-ERR not-in-room")


def test_a_duplicate_login_on_another_node_is_refused_or_replaces(nodes, daemond_process, redis_server):
    a, b = nodes(2)
    alice = Chatter(a, "alice").ok()
    second = Chatter(b, "alice", register=False)
    assert second.reply.startswith("-ERR already-connected"), second.reply
    alice.send("still here")
    assert alice.command("/who") == ([], "+OK alice")
    c = nodes(1, on_duplicate_login="replace")[0]  # a node that replaces (its own setting)
    third = Chatter(c, "alice", register=False).ok()
    alice.wait_for("NOTICE replaced: alice logged in from " + third.client.sock.getsockname()[0] + ":"
                   + str(third.client.sock.getsockname()[1]))
    assert third.command("/who") == ([], "+OK alice")


def test_a_node_killed_mid_stream_has_its_users_parted_and_nothing_acknowledged_is_lost(nodes):
    a, b = nodes(2, node_timeout=3)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    acknowledged = []

    def speak():  # /say answers +OK once the message is in the room's stream
        try:
            for n in range(100_000):
                _, reply = bob.command(f"/say #lobby mid-stream {n}")
                if reply != "+OK":
                    return
                acknowledged.append(f"mid-stream {n}")
        except (EOFError, OSError, TimeoutError):
            return

    speaker = threading.Thread(target=speak)
    speaker.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    b.kill()  # kill -9 while bob is sending
    speaker.join(15)
    started = time.monotonic()
    seen = alice.wait_for("PART bob", timeout=10)
    assert time.monotonic() - started < 3 + 1 + 2  # node_timeout, the reaper's third of it, room for a busy machine
    received = [s[len("MSG bob "):] for s in seen if s.startswith("MSG bob ")]
    assert received[:len(acknowledged)] == acknowledged  # in order, every acknowledged one
    assert alice.command("/who") == ([], "+OK alice")
    again = Chatter(a, "bob", register=False).ok()  # its name logs in again on another node
    history, done = again.command(f"/history {len(received)}")
    assert [h.split(" ", 3)[3] for h in history] == received


def test_with_redis_gone_a_message_is_refused_then_the_room_goes_on_without_gap_or_repeat(nodes, redis_server):
    a, b = nodes(2, node_timeout=30)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    alice.send("one")
    bob.wait_for("MSG alice one")
    carol = Chatter(b, "carol").ok()  # acknowledged: with appendfsync always, on disk
    redis_server.kill()
    _, refused = alice.command("//two")
    assert refused.startswith("-ERR unavailable"), refused
    redis_server.start()
    deadline = time.monotonic() + 20
    while True:  # sessions stayed connected; the first message once Redis is back
        _, reply = alice.command("/me three")
        if reply == "+OK":
            break
        assert reply.startswith("-ERR unavailable") and time.monotonic() < deadline, reply
        time.sleep(0.2)
    alice.send("four")
    seen = bob.wait_for("MSG alice four")
    assert [s for s in seen if s.startswith(("MSG", "ACTION"))] == ["ACTION alice three", "MSG alice four"]
    history, _ = bob.command("/history 10")
    assert [h.split(" ", 3)[3] for h in history] == ["one", "/me three", "four"]
    carol.close()
    assert Chatter(a, "carol", register=False).ok().replay[-1].endswith(" alice four")


def test_daemonctl_kick_on_any_node_ends_the_users_sessions_on_every_node(nodes):
    a, b = nodes(2)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    kicked = a.ctl("kick", "BOB", "--reason", "spam")
    assert kicked.returncode == 0 and kicked.stdout.strip() == "kicked bob: 1 session (n1/chat)", kicked
    bob.wait_for("NOTICE kicked by the operator: spam")
    alice.wait_for("PART bob")
    missing = b.ctl("kick", "nobody")
    assert missing.returncode == 1 and missing.stderr.strip() == "daemonctl: nobody is not connected", missing


def test_a_node_cut_off_from_redis_ends_its_chat_sessions_rather_than_split_the_rooms(nodes, redis_server):
    a, = nodes(1, node_timeout=2)
    alice = Chatter(a, "alice").ok()
    redis_server.kill()
    started = time.monotonic()
    seen = alice.wait_for("NOTICE cut off from the cluster (Redis unavailable); closing", timeout=10)
    assert time.monotonic() - started >= 1  # half of node_timeout: a short outage is ridden out
    assert seen[-1].startswith("NOTICE cut off")
    with pytest.raises(EOFError):
        alice.client.read_line()
    assert "ended 1 chat sessions rather than split the rooms" in a.stderr()


def test_irc_users_on_two_nodes_and_a_line_user_on_a_third_share_a_channel(daemond_process, redis_server):
    # the IRC side is jaraco's irc library, a client nobody here wrote
    from tests.integration.test_irc_client_library import Client
    from tests.support.irc import listeners, settings

    cluster = {"redis": redis_server.url, "prefix": "t:"}
    a, b, c = (daemond_process(listeners(), settings(), cluster={**cluster, "node": n}) for n in ("a", "b", "c"))
    ann = Chatter(c, "ann").ok()  # registered on c: an account for every node
    Chatter(c, "ivan").ok().close()
    Chatter(c, "jo").ok().close()
    ivan = Client(("127.0.0.1", a.ports["irc"]), "ivan", secret=PASSWORD)
    jo = Client(("127.0.0.1", b.ports["irc"]), "jo", sasl=True, secret=PASSWORD)
    for client in (ivan, jo):
        client.wait_type("welcome")
    ivan.connection.join("#lobby")
    ivan.wait_type("join", target="#lobby")
    ann.wait_for("JOIN ivan")
    jo.connection.join("#lobby")
    ivan.wait(lambda e: e.type == "join" and e.source.nick == "jo")
    ann.wait_for("JOIN jo")
    ann.send("hello irc people")
    for client in (ivan, jo):
        event = client.wait_type("pubmsg", target="#lobby")
        assert event.source.nick == "ann" and event.arguments == ["hello irc people"]
    ivan.connection.privmsg("#lobby", "from node a")
    assert jo.wait_type("pubmsg").arguments == ["from node a"]
    ann.wait_for("MSG ivan from node a")
    jo.connection.privmsg("ivan", "psst")  # a private message to another node's user
    event = ivan.wait_type("privmsg")
    assert event.source.nick == "jo" and event.arguments == ["psst"]
    ann.send("/msg jo for jo only")
    assert jo.wait_type("privmsg").arguments == ["for jo only"]
    jo.connection.whois(["ann"])
    assert jo.wait_type("whoischannels").arguments[1].split() == ["#lobby"]
    jo.close()
    ann.wait_for("PART jo")


def test_a_node_that_stops_parts_its_users_in_the_others_rooms(nodes):
    a, b = nodes(2)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    assert b.terminate() == 0
    alice.wait_for("PART bob")
    assert alice.command("/who") == ([], "+OK alice")


def test_a_node_killed_and_restarted_under_its_name_parts_the_users_of_its_earlier_run(daemond_process, redis_server):
    cluster = {"redis": redis_server.url, "prefix": "t:", "node_timeout": 30}  # long: no help from aging out
    plugins = {"auth": auth_settings(), "chat": {"rate": 0}}
    a = daemond_process(LISTENERS, plugins, cluster={**cluster, "node": "a"})
    b = daemond_process(LISTENERS, plugins, cluster={**cluster, "node": "b"})
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    b.kill()
    b = daemond_process(LISTENERS, plugins, cluster={**cluster, "node": "b"})
    alice.wait_for("PART bob")
    assert Chatter(b, "bob", register=False).ok().command("/who") == ([], "+OK alice bob")
    assert "1 users of an earlier run of this node (b) parted from their rooms" in b.stderr()


def test_two_hundred_logins_at_once_on_one_node_share_its_redis_connections(daemond_process, redis_server):
    # every connection has a thread; they take turns on the node's pool instead of failing
    node = daemond_process({"chat": {"plugins": ["tests.plugins.fakelogin", "chat"], "max_connections": 500,
                                     "max_logged_in_per_ip": None, "max_unauthenticated_per_ip": None}},
                           {"chat": {"rate": 0, "announce_limit": 0}},
                           cluster={"redis": redis_server.url, "node": "n0", "prefix": "t:"})
    clients = [node.client("chat", timeout=30) for _ in range(200)]
    for client in clients:
        assert client.read_line().startswith("+OK")
    for i, client in enumerate(clients):  # all at once: the server handles them as they come
        client.send_line(f"user{i}")
    replies = [client.read_line() for client in clients]
    assert replies == [f"+OK logged in as user{i}" for i in range(200)]
    assert redis_server.client().hlen("t:chat:users") == 200
    for client in clients:
        client.close()


def test_an_irc_guest_whose_nick_is_taken_on_another_node_may_pick_another(daemond_process, redis_server):
    from tests.support.irc import IrcClient, listeners, settings

    cluster = {"redis": redis_server.url, "prefix": "t:"}
    a, b = (daemond_process(listeners(), settings(guests=True), cluster={**cluster, "node": n}) for n in ("a", "b"))
    first = IrcClient(("127.0.0.1", a.ports["irc"]))
    first.register("guesty")
    second = IrcClient(("127.0.0.1", b.ports["irc"]))
    second.send("NICK guesty")
    second.send("USER g 0 * :G")
    assert " 433 " in second.until(" 433 ")[-1]
    second.send("NICK guesty2")  # as on one node: the client tries another nick on the same connection
    assert " 001 " in second.until(" 001 ")[-1]


@pytest.mark.parametrize("on_duplicate_login", ["replace", "reject"])
def test_a_dead_nodes_user_who_logs_in_on_another_node_is_parted_from_its_other_rooms(nodes, on_duplicate_login):
    a, b = nodes(2, node_timeout=3, on_duplicate_login=on_duplicate_login)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    assert alice.command("/join #dev") == ([], "+OK")
    assert bob.command("/join #dev") == ([], "+OK")
    assert bob.command("/who #dev") == ([], "+OK alice bob")
    a.kill()  # kill -9: alice's client comes back at once on the other node, before the reaper
    deadline = time.monotonic() + 10
    while True:  # replace: at once; reject: once a's heartbeat has expired
        again = Chatter(b, "alice", register=False)
        if again.reply.startswith("+OK"):
            break
        assert again.reply.startswith("-ERR already-connected") and time.monotonic() < deadline, again.reply
        again.close()
        time.sleep(0.05)
    bob.wait_for("PART #dev alice")
    assert bob.command("/who #dev") == ([], "+OK bob")
    assert again.command("/join #dev") == ([], "+OK")
    bob.wait_for("JOIN #dev alice")
    assert bob.command("/who #dev") == ([], "+OK alice bob")


def test_a_user_replaced_from_another_node_is_parted_once_from_its_other_rooms(nodes):
    a, b = nodes(2, on_duplicate_login="replace")
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    assert alice.command("/join #dev") == ([], "+OK")
    assert bob.command("/join #dev") == ([], "+OK")
    again = Chatter(b, "alice", register=False).ok()
    alice.wait_for("NOTICE replaced: alice logged in from " + ":".join(map(str, again.client.sock.getsockname())))
    assert again.command("/who") == ([], "+OK alice bob")
    assert bob.command("/who #dev") == ([], "+OK bob")
    again.send("still here")  # the lobby's seat changed hands: no PART, no JOIN
    again.send("/say #lobby and here")
    seen = bob.wait_for("MSG alice and here")
    if "PART #dev alice" not in seen:  # rooms have no order between them
        seen += bob.wait_for("PART #dev alice")
    assert seen.count("PART #dev alice") == 1 and "PART alice" not in seen and "JOIN alice" not in seen, seen


def test_a_node_paused_past_node_timeout_ends_the_sessions_the_others_parted(nodes):
    import signal

    a, b = nodes(2, node_timeout=3)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    b.proc.send_signal(signal.SIGSTOP)  # a VM pause, a swap storm: longer than node_timeout
    try:
        alice.wait_for("PART bob", timeout=15)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    # not a member any more: rather than hear the room and be refused every line, bob is told
    seen = bob.wait_for("NOTICE cut off from the cluster (this node's sessions were taken for gone); closing")
    assert not [s for s in seen if s.startswith("MSG ")]
    with pytest.raises(EOFError):
        bob.client.read_line()
    assert Chatter(b, "bob", register=False).ok().command("/who") == ([], "+OK alice bob")


def test_an_irc_user_cut_off_from_the_cluster_is_told_in_irc(daemond_process, redis_server):
    from tests.support.irc import IrcClient, listeners, settings

    a = daemond_process(listeners(), settings(guests=True), cluster={"redis": redis_server.url, "prefix": "t:",
                                                                      "node": "a", "node_timeout": 2})
    irc = IrcClient(("127.0.0.1", a.ports["irc"]))
    irc.register("guesty")
    redis_server.kill()
    assert irc.closed()[-1] == "ERROR :Closing Link: irc.test.local (Cut off from the cluster; reconnect)"


def test_after_redis_lost_its_data_the_rooms_work_again(nodes, redis_server):
    a, b = nodes(2, node_timeout=3)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    for n in range(5):
        alice.send(f"before {n}")
    bob.wait_for("MSG alice before 4")
    redis_server.kill()
    for path in redis_server.directory.iterdir():  # no persistence, or a replica that lagged behind
        if path.name != "redis.log":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    redis_server.start()
    deadline = time.monotonic() + 30
    while True:  # a newcomer gets in (Redis may take a moment)
        carol = Chatter(a, "carol")
        if carol.reply.startswith("+OK"):
            break
        assert time.monotonic() < deadline, carol.reply
        time.sleep(0.3)
    for who in (alice, bob):  # members no more: told, rather than left hearing nothing and refused
        who.wait_for("NOTICE cut off from the cluster (this node's sessions were taken for gone); closing")
    dave = Chatter(b, "dave").ok()
    carol.send("after the loss")
    dave.wait_for("MSG carol after the loss")


def test_rooms_made_and_left_leave_no_keys_behind(nodes, redis_server):
    a, b = nodes(2)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    before = sorted(redis_server.client().keys("t:chat:*"))
    for n in range(20):
        assert alice.command(f"/join #tmp{n}") == ([], "+OK")
        assert alice.command(f"/part #tmp{n}") == ([], "+OK")
    assert sorted(redis_server.client().keys("t:chat:*")) == before
    for n in range(2):  # made again (a topic is no message: it is dropped again): numbered from 1 again
        assert alice.command("/join #again") == ([], "+OK")
        assert bob.command("/join #again") == ([], "+OK")
        alice.wait_for("JOIN #again bob")
        assert alice.command(f"/topic #again round {n}") == ([], "+OK")
        bob.wait_for(f"TOPIC #again alice round {n}")  # heard on the other node the second time too
        assert bob.command("/part #again") == ([], "+OK")
        assert alice.command("/part #again") == ([], "+OK")
    assert sorted(redis_server.client().keys("t:chat:*")) == before


def test_a_message_sent_while_redis_stalls_is_in_the_room_once(nodes, redis_server):
    a, b = nodes(2, node_timeout=30)
    alice = Chatter(a, "alice").ok()
    bob = Chatter(b, "bob").ok()
    alice.wait_for("JOIN bob")
    alice.send("warm")  # the say script is loaded in Redis
    bob.wait_for("MSG alice warm")
    redis_server.proc.send_signal(signal.SIGSTOP)  # a stall longer than the 2 s command timeout (fsync, swap, fork)
    threading.Timer(3.0, redis_server.proc.send_signal, args=(signal.SIGCONT,)).start()
    _, reply = alice.command("/say #lobby once")
    alice.send("after")
    seen = [s for s in bob.wait_for("MSG alice after", timeout=20) if s.startswith("MSG")]
    history, _ = bob.command("/history 10")
    said = ["once", "after"] if reply == "+OK" else ["after"]
    assert seen == [f"MSG alice {text}" for text in said]
    assert [h.split(" ", 3)[3] for h in history] == ["warm"] + said



def test_during_a_redis_outage_irc_and_daemonctl_say_so_and_every_connection_lives(daemond_process, redis_server):
    from tests.support.irc import IrcClient, listeners, settings

    a = daemond_process(listeners(), settings(guests=True), cluster={"redis": redis_server.url, "prefix": "t:",
                                                                      "node": "a", "node_timeout": 60})
    irc = IrcClient(("127.0.0.1", a.ports["irc"]))
    irc.register("guesty")
    irc.send("JOIN #lobby")
    irc.until(" 366 ")
    redis_server.kill()
    for command in ("WHOIS someone", "LIST", "PRIVMSG #lobby :hello", "TOPIC #lobby :new"):
        irc.send(command)
        line = irc.until(" NOTICE guesty :")[-1]
        assert "store cannot be reached just now" in line and "redis" not in line.lower(), line
    irc.send("PING :still-here")
    assert irc.until("PONG")[-1].endswith("still-here")  # the connection lives
    listed = a.ctl("rooms")
    assert listed.returncode == 1 and listed.stderr.startswith("daemonctl: the chat's store cannot be reached"), listed
    log = a.stderr()
    assert "Traceback" not in log, log
