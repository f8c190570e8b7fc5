"""`daemond cluster import` (docs/cluster.md): a standalone node's users, tokens and "hello
again" map copied into the cluster's Redis; idempotent; refused clearly when it cannot run."""

from __future__ import annotations

import subprocess
import time

from daemon.testing import write_config
from tests.support.auth import TOKEN, auth_settings
from tests.support.process import installed

PASSWORD = "correct horse"
LOGIN = {"login": {"plugins": ["auth", "echo"]}}


def daemond_cluster(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([installed("daemond"), "cluster", *args], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def say(node, line: str) -> str:
    with node.client("login", timeout=10) as c:
        c.read_line()
        c.send_line(line)
        return c.read_line()


def test_hook_daemond_cluster_import(daemond_process, redis_server, tmp_path):
    standalone = daemond_process(LOGIN, {"auth": auth_settings()})
    token = TOKEN.search(say(standalone, f"/register Ann {PASSWORD}")).group(1)
    assert say(standalone, f"/register Ben {PASSWORD}").startswith("+OK")
    state_dir = standalone.config.parent / "state"
    cluster = {"redis": redis_server.url, "prefix": "t:"}
    config = write_config(tmp_path / "import", LOGIN, {"auth": auth_settings()}, state_dir=str(state_dir),
                          cluster=cluster)
    first = daemond_cluster("import", "-c", str(config))  # while the standalone node still runs
    assert first.returncode == 0, first.stderr
    assert first.stdout == (f"auth: 2 users copied from {state_dir / 'auth.db'} with 2 login tokens; "
                            "0 already in the cluster, left as they are\n")
    again = daemond_cluster("import", "-c", str(config))  # idempotent: nothing twice
    assert again.returncode == 0 and "auth: 0 users copied" in again.stdout and "2 already in the cluster" in again.stdout
    standalone.terminate()
    node = daemond_process(LOGIN, {"auth": auth_settings()}, cluster={**cluster, "node": "n1"})
    assert say(node, f"/login ben {PASSWORD}").startswith("+OK logged in as Ben")
    assert say(node, f"/login-token {token}") == "+OK logged in as Ann"
    assert say(node, f"/register ann {PASSWORD}").startswith("-ERR name-taken")


def test_a_user_registered_in_the_cluster_meanwhile_is_left_as_it_is(daemond_process, redis_server, tmp_path):
    standalone = daemond_process(LOGIN, {"auth": auth_settings()})
    assert say(standalone, "/register Cleo old-password-1").startswith("+OK")
    standalone.terminate()
    cluster = {"redis": redis_server.url, "prefix": "t:"}
    node = daemond_process(LOGIN, {"auth": auth_settings()}, cluster={**cluster, "node": "n1"})
    assert say(node, "/register cleo new-password-2").startswith("+OK")
    config = write_config(tmp_path / "import", LOGIN, {"auth": auth_settings()},
                          state_dir=str(standalone.config.parent / "state"), cluster=cluster)
    result = daemond_cluster("import", "-c", str(config))
    assert result.returncode == 0 and "auth: 0 users copied" in result.stdout and "1 already" in result.stdout
    assert say(node, "/login cleo new-password-2").startswith("+OK")  # the cluster's own user won


def test_import_needs_a_cluster_and_a_reachable_redis(daemond_process, redis_server, tmp_path):
    standalone = write_config(tmp_path / "s", LOGIN, {"auth": auth_settings()})
    result = daemond_cluster("import", "-c", str(standalone))
    assert result.returncode == 1
    assert result.stderr == (f"daemond cluster import: {standalone} does not set cluster.redis: "
                             "there is no cluster to import into\n")
    node = daemond_process(LOGIN, {"auth": auth_settings()})
    assert say(node, f"/register Dora {PASSWORD}").startswith("+OK")
    config = write_config(tmp_path / "import", LOGIN, {"auth": auth_settings()},
                          state_dir=str(node.config.parent / "state"), cluster={"redis": redis_server.url})
    redis_server.kill()
    result = daemond_cluster("import", "-c", str(config))
    assert result.returncode == 1 and result.stderr.startswith(
        f"daemond cluster import: plugin 'auth': Redis at {redis_server.url} is unavailable"), result.stderr
    assert result.stderr.rstrip().endswith("run it again to copy the rest")


def test_a_standalone_chat_history_is_copied_into_the_cluster_rooms(daemond_process, redis_server, tmp_path):
    from tests.system.test_cluster_chat import Chatter

    chat = {"chat": {"plugins": ["auth", "chat"]}}
    plugins = {"auth": auth_settings(), "chat": {"rate": 0}}
    standalone = daemond_process(chat, plugins)
    alice = Chatter(standalone, "alice").ok()
    for n in range(3):
        alice.send(f"lobby {n}")
    assert alice.command("/join #Dev") == ([], "+OK")
    alice.send("in dev")
    assert alice.command("/topic #dev the topic") == ([], "+OK")
    assert alice.command("/join #empty") == ([], "+OK")  # never spoken in: not copied, as standalone drops it
    state_dir = standalone.config.parent / "state"
    cluster = {"redis": redis_server.url, "prefix": "t:"}
    config = write_config(tmp_path / "import", chat, plugins, state_dir=str(state_dir), cluster=cluster)
    first = daemond_cluster("import", "-c", str(config))  # while the standalone node still serves
    assert first.returncode == 0, first.stderr
    assert (f"chat: 4 messages in 2 rooms copied from {state_dir / 'chat.db'}; 0 already in the cluster, "
            "left as they are\n") in first.stdout, first.stdout
    assert alice.command("/say #dev after the first copy") == ([], "+OK")
    again = daemond_cluster("import", "-c", str(config))  # what is new is copied, nothing twice
    assert "chat: 1 messages in 2 rooms copied" in again.stdout and "4 already in the cluster" in again.stdout, again.stdout
    alice.close()
    standalone.terminate()
    node = daemond_process(chat, plugins, cluster={**cluster, "node": "n1"})
    bob = Chatter(node, "bob")  # auth's users were copied too: alice exists, bob is new
    assert [line.split(" ", 2)[2] for line in bob.ok().replay] == ["alice lobby 0", "alice lobby 1", "alice lobby 2"]
    data, done = bob.command("/rooms")
    assert done == "+OK" and data == ["ROOM #Dev 0 the topic", "ROOM #lobby 1"], data
    data, done = bob.command("/join #dev")
    assert [line.split(" ", 3)[3] for line in data] == ["alice in dev", "alice after the first copy"], data
    history, _ = bob.command("/history #dev 5")  # right after the join: what the replay had
    assert [line.split(" ", 3)[3] for line in history] == ["alice in dev", "alice after the first copy"], history
    bob.send("new in the cluster")
    deadline = time.monotonic() + 10
    while True:  # one's own line is in /history once this node's relay has delivered it (docs/cluster.md)
        history, _ = bob.command("/history #dev 5")
        if [line.split(" ", 3)[3] for line in history][-1] == "bob new in the cluster":
            break
        assert time.monotonic() < deadline, history
        time.sleep(0.05)


def test_a_room_the_cluster_already_talks_in_is_not_mixed_with_an_imported_history(daemond_process, redis_server,
                                                                                  tmp_path):
    from tests.system.test_cluster_chat import Chatter

    chat = {"chat": {"plugins": ["auth", "chat"]}}
    plugins = {"auth": auth_settings(), "chat": {"rate": 0}}
    cluster = {"redis": redis_server.url, "prefix": "t:"}
    node = daemond_process(chat, plugins, cluster={**cluster, "node": "n1"})
    bob = Chatter(node, "bob").ok()
    for n in range(3):
        assert bob.command(f"/say #lobby cluster {n}") == ([], "+OK")
    standalone = daemond_process(chat, plugins)
    alice = Chatter(standalone, "alice").ok()
    for n in range(2):
        assert alice.command(f"/say #lobby standalone {n}") == ([], "+OK")
    assert alice.command("/join #solo") == ([], "+OK")
    assert alice.command("/say #solo only here") == ([], "+OK")
    config = write_config(tmp_path / "import", chat, plugins, state_dir=str(standalone.config.parent / "state"),
                          cluster=cluster)
    result = daemond_cluster("import", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "chat: 1 messages in 2 rooms copied" in result.stdout, result.stdout
    assert ("chat: messages not copied, because the cluster's room of that name has a history of its own (they "
            "would come after newer ones): #lobby (2)") in result.stdout, result.stdout
    history, _ = bob.command("/history 10")
    assert [h.split(" ", 3)[3] for h in history] == [f"cluster {n}" for n in range(3)]  # untouched
