"""The identification file: mode, refusal, durability, hashing parameters (issue 3, "Must have" 6)."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading

import argon2
import pytest

from daemon.core import StartError
from plugins.auth.hashing import OWASP_MINIMUM, Argon2Params, Hasher
from plugins.auth.settings import SCHEMA, AuthSettings
from plugins.auth.store import StoreError, UserStore
from tests.support.auth import CHEAP_ARGON2, auth_settings, connect, gone, plugin_of, register, start


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_store_files_are_created_0600_in_wal_mode(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    db = d.config.state_dir / "auth.db"
    for path in (db, db.with_name("auth.db-wal"), db.with_name("auth.db-shm")):
        assert mode(path) == 0o600, path
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_is_created_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        store = UserStore(tmp_path / "users.db")
    finally:
        os.umask(old)
    store.add_user("a", "a", "hash", 1.0)
    store.close()
    for path in tmp_path.iterdir():
        assert mode(path) == 0o600, path


def test_database_path_is_relative_to_the_state_directory_or_absolute(daemond_factory, tmp_path):
    d = start(daemond_factory, database="sub-users.db")
    assert (d.config.state_dir / "sub-users.db").exists()
    elsewhere = tmp_path / "elsewhere.db"
    start(daemond_factory, database=str(elsewhere))
    assert elsewhere.exists()


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_to_start_when_others_may_read_the_store(daemond_factory, tmp_path, bad_mode):
    state = tmp_path / "shared-state"
    state.mkdir()
    db = state / "auth.db"
    db.touch()
    db.chmod(bad_mode)
    with pytest.raises(StartError) as raised:
        start(daemond_factory, state_dir=str(state))
    message = str(raised.value)
    assert message.startswith("plugin 'auth' failed to start: refusing to use users database")
    assert f"mode {bad_mode:04o}" in message and f"chmod 600 {db}" in message
    assert mode(db) == bad_mode  # left for the operator to fix


def test_refuses_a_wal_file_others_may_read(tmp_path):
    UserStore(tmp_path / "auth.db").close()
    wal = tmp_path / "auth.db-wal"
    wal.touch()
    wal.chmod(0o644)
    with pytest.raises(StoreError, match="auth.db-wal: mode 0644"):
        UserStore(tmp_path / "auth.db")


def test_refusal_from_the_command_line_is_one_clear_line(daemond_process, tmp_path):
    state = tmp_path / "cli-state"
    state.mkdir(mode=0o700)
    db = state / "auth.db"
    db.touch()
    db.chmod(0o644)
    proc = daemond_process({"login": {"plugins": ["auth", "echo"]}}, {"auth": auth_settings()},
                           ready=False, state_dir=str(state))
    assert proc.proc.wait(15) == 1
    stderr = proc.stderr()
    assert "Traceback" not in stderr
    assert (f"daemond: plugin 'auth' failed to start: refusing to use users database {db}: mode 0644 lets other "
            f"users read or write it (it holds password hashes); run: chmod 600 {db}") in stderr


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "auth.db"
    path.write_bytes(b"not sqlite at all" * 100)
    path.chmod(0o600)
    with pytest.raises(StoreError, match="is not a usable users database"):
        UserStore(path)


def test_store_keeps_name_hash_created_last_login_last_ip(daemond_factory):
    d = start(daemond_factory)
    register(d, "Alice", "password-1", source="127.0.0.3")[0].close()
    client, _ = connect(d, source="127.0.0.4")
    client.command("/login alice password-1")
    client.close()
    user = plugin_of(d).store.user("alice")
    assert (user.key, user.name, user.last_ip) == ("alice", "Alice", "127.0.0.4")
    assert user.created <= user.last_login
    assert user.hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert "password-1" not in user.hash


# -- argon2 parameters --------------------------------------------------------------------------


def test_default_argon2_parameters_are_owasp_strength():
    assert OWASP_MINIMUM == {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}
    settings = AuthSettings.from_section(SCHEMA.validate({}, None, "plugins.auth")[0])
    assert settings.argon2 == Argon2Params(**OWASP_MINIMUM)
    assert not settings.argon2.weaker_than_owasp()
    hasher = Hasher(settings.argon2, 1)
    try:
        params = argon2.extract_parameters(hasher.hash("password-1"))
    finally:
        hasher.close()
    assert (params.type, params.time_cost, params.memory_cost, params.parallelism) == (argon2.Type.ID, 2, 19456, 1)


def test_by_default_one_hash_runs_per_cpu():
    cpus = len(os.sched_getaffinity(0))
    assert AuthSettings.from_section({}).max_hashing == cpus
    two_lanes = AuthSettings.from_section({"argon2": {"parallelism": 2, "memory_cost": 19456}})
    assert two_lanes.max_hashing == max(1, cpus // 2)
    assert AuthSettings.from_section({"max_hashing": 7}).max_hashing == 7
    # in a daemon: one per CPU left for native work (the Python threads keep one to themselves)
    assert AuthSettings.from_section({}, {0, 1, 2}).max_hashing == 3


def test_partial_argon2_settings_keep_the_other_defaults():
    settings = AuthSettings.from_section(SCHEMA.validate({"argon2": {"memory_cost": 65536}}, None, "plugins.auth")[0])
    assert settings.argon2 == Argon2Params(time_cost=2, memory_cost=65536, parallelism=1)


@pytest.mark.parametrize("argon2_section, message", [
    ({"time_cost": 0}, "time_cost must be an integer from 1 to 100, not 0"),
    ({"memory_cost": "lots"}, "memory_cost must be an integer from 8"),
    ({"rounds": 3}, "unknown key 'rounds'"),
    ({"parallelism": 4, "memory_cost": 16}, "memory_cost must be at least 8 KiB per lane"),
])
def test_bad_argon2_settings_are_config_errors(argon2_section, message):
    _, problems = SCHEMA.validate({"argon2": argon2_section}, None, "plugins.auth")
    assert len(problems) == 1 and message in str(problems[0])


def test_weaker_than_owasp_parameters_are_logged(daemond_factory):
    d = start(daemond_factory)
    log = (d.config.state_dir / "daemond.log").read_text()
    assert "argon2 parameters m=8,t=1,p=1 are weaker than OWASP's minimum (m=19456,t=2,p=1)" in log


def test_a_login_rehashes_a_password_stored_with_other_parameters(daemond_factory, tmp_path):
    state = str(tmp_path / "shared")
    old = start(daemond_factory, state_dir=state)
    register(old, "alice", "password-1")[0].close()
    register(old, "bob", "password-2")[0].close()
    old.stop()
    stronger = {"time_cost": 2, "memory_cost": 64, "parallelism": 1}
    new = start(daemond_factory, state_dir=state, argon2=stronger)
    store = plugin_of(new).store
    assert argon2.extract_parameters(store.user("alice").hash).time_cost == 1
    client, _ = connect(new)
    assert client.command("/login alice password-1")[1].startswith("+OK logged in as alice")
    client.close()
    params = argon2.extract_parameters(store.user("alice").hash)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 64, 1)
    assert argon2.extract_parameters(store.user("bob").hash).time_cost == 1  # not logged in: untouched
    client, _ = connect(new)
    assert client.command("/login alice password-1")[1].startswith("+OK logged in as alice")
    client.close()
    log = (new.config.state_dir / "daemond.log").read_text()
    assert log.count("rehashed the password of alice with the current argon2 parameters (m=64,t=2,p=1)") == 1


# -- kill -9 ------------------------------------------------------------------------------------------


def test_kill_9_during_a_burst_of_registrations_loses_nothing_committed(daemond_process):
    proc = daemond_process({"login": {"plugins": ["auth", "echo"]}},
                           {"auth": {"argon2": dict(CHEAP_ARGON2), "max_attempts": 1000, "register_per_address": None}})
    confirmed: list[str] = []
    # lock guards confirmed (appended by the client threads)
    lock = threading.Lock()
    enough = threading.Event()

    def client_loop(worker: int) -> None:
        for i in range(10_000):
            name = f"w{worker}-u{i}"
            try:
                with proc.client("login", timeout=5) as client:
                    client.read_line()
                    final = client.command(f"/register {name} password-{i}")[1]
            except (OSError, EOFError, TimeoutError):
                return  # the daemon was killed
            if final.startswith("+OK registered"):
                with lock:
                    confirmed.append(name)
                    if len(confirmed) >= 60:
                        enough.set()

    workers = [threading.Thread(target=client_loop, args=(w,), name=f"burst-{w}") for w in range(4)]
    for worker in workers:
        worker.start()
    try:
        assert enough.wait(30), "registrations did not come through"
        proc.kill()  # SIGKILL, mid-burst
    finally:
        proc.kill()
        for worker in workers:
            worker.join(30)
    db = proc.config.parent / "state" / "auth.db"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in conn.execute("SELECT name FROM users")}
    finally:
        conn.close()
    with lock:
        missing = set(confirmed) - stored
    assert len(confirmed) >= 60
    assert not missing, f"{len(missing)} registrations answered +OK were lost: {sorted(missing)[:5]}"


def rewrite(running, mutate) -> dict:
    return running.reconfigure(mutate)


def test_a_reload_applies_new_settings_to_new_connections_and_keeps_the_store(daemond_factory):
    d = start(daemond_factory)
    register(d, "alice", "password-1")[0].close()
    plugin = plugin_of(d)
    store, hasher = plugin.store, plugin.hasher
    report = rewrite(d, lambda doc: doc["plugins"]["auth"].update(allow_register=False, max_attempts=1))
    assert "plugin auth settings changed" in report["changes"]
    assert plugin.store is store and plugin.hasher is hasher  # same argon2 parameters: same hasher
    client, greeting = connect(d)
    assert "/register" not in greeting
    assert client.command("/register bob password-2")[1].startswith("-ERR registration-closed ")
    assert client.command("/login alice wrong-password")[1].startswith("-ERR bad-credentials ")
    assert client.command("/login alice password-1")[1].startswith("-ERR too-many-attempts ")  # max_attempts 1
    client.close()
    old_helper = d.daemon.status()["plugins"]["auth"]["hashing"]
    assert old_helper.startswith("helper process ")
    rewrite(d, lambda doc: doc["plugins"]["auth"].update(argon2={"time_cost": 2, "memory_cost": 16, "parallelism": 1}))
    assert plugin.hasher is not hasher and str(plugin.hasher.params) == "m=16,t=2,p=1"
    # the old hasher's helper ends; the new one's is started at once, not at the first login
    new_helper = d.daemon.status()["plugins"]["auth"]["hashing"]
    assert new_helper.startswith("helper process ") and new_helper != old_helper
    assert gone(int(old_helper.split()[-1]), within=10), "the replaced hasher's helper did not end"


def test_auth_named_first_at_a_reload_opens_its_store(daemond_factory):
    d = daemond_factory({"login": {"plugins": ["echo"]}}, reload={"watch": False})
    assert not (d.config.state_dir / "auth.db").exists()

    def add_auth(doc):
        doc["listeners"]["login"]["plugins"] = ["auth", "echo"]
        doc["plugins"] = {"auth": {"argon2": dict(CHEAP_ARGON2)}}

    assert "plugin auth loaded" in rewrite(d, add_auth)["changes"]
    assert mode(d.config.state_dir / "auth.db") == 0o600
    client, _ = register(d, "alice", "password-1")
    client.send(b"hi\n")
    assert client.read_line() == "hi"
    client.close()


def test_a_login_whose_user_was_deleted_meanwhile_is_refused_cleanly(tmp_path):
    store = UserStore(tmp_path / "auth.db")
    store.add_user("alice", "alice", "hash", 1.0)
    assert store.record_login("alice", "127.0.0.1", 2.0, token=("digest", 99.0)) is not None
    store.clear()
    assert store.record_login("alice", "127.0.0.1", 3.0, token=("digest2", 99.0)) is None
    assert store.counts(0) == {"users": 0, "tokens": 0}
    assert store.last_user_from("127.0.0.1") is None
    store.close()


def test_a_forgotten_login_leaves_nothing_behind(tmp_path):
    # a login another plugin refused (chat's second session for a name) is taken back
    store = UserStore(tmp_path / "auth.db")
    store.add_user("alice", "alice", "hash", 1.0)
    store.add_user("bob", "bob", "hash", 1.0)
    store.record_login("alice", "10.0.0.1", 2.0, token=("a1", 99.0))
    store.record_login("bob", "10.0.0.2", 2.5, token=("b1", 99.0))
    before = store.users(), store.counts(0), store.last_user_from("10.0.0.1"), store.last_user_from("10.0.0.2")
    refused = store.record_login("alice", "10.0.0.2", 3.0, token=("a2", 99.0))
    assert store.last_user_from("10.0.0.2") == "alice" and store.counts(0)["tokens"] == 3
    store.forget_login(refused)
    assert (store.users(), store.counts(0), store.last_user_from("10.0.0.1"), store.last_user_from("10.0.0.2")) == before
    # an address nobody had used before is forgotten altogether
    store.forget_login(store.record_login("bob", "10.0.0.3", 4.0, token=("b2", 99.0)))
    assert store.last_user_from("10.0.0.3") is None and store.user("bob").last_login == 2.5
    store.close()


def test_forgetting_a_login_keeps_a_later_one(tmp_path):
    # two logins of one user at once: taking back the first must not undo the second
    store = UserStore(tmp_path / "auth.db")
    store.add_user("alice", "alice", "hash", 1.0)
    first = store.record_login("alice", "10.0.0.1", 2.0, token=("t1", 99.0))
    store.record_login("alice", "10.0.0.1", 3.0, token=("t2", 99.0))
    store.forget_login(first)
    user = store.user("alice")
    assert (user.last_login, user.last_ip) == (3.0, "10.0.0.1")
    assert store.last_user_from("10.0.0.1") == "alice" and store.counts(0)["tokens"] == 1
    assert store.token_user(digest="t2", now=0.0) is not None and store.token_user(digest="t1", now=0.0) is None
    store.close()


def test_expired_tokens_are_deleted_at_a_login_once_a_minute(tmp_path):
    store = UserStore(tmp_path / "auth.db")
    store.add_user("alice", "alice", "hash", 1.0)

    def stored_tokens():
        conn = sqlite3.connect(tmp_path / "auth.db")
        try:
            return {row[0] for row in conn.execute("SELECT digest FROM tokens")}
        finally:
            conn.close()

    store.record_login("alice", "10.0.0.1", 100.0, token=("old", 120.0))  # deletes (nothing), next at 160
    store.record_login("alice", "10.0.0.1", 130.0, token=("new", 900.0))  # "old" expired, within the minute
    assert stored_tokens() == {"old", "new"}
    assert store.token_user("old", 130.0) is None and store.counts(130.0)["tokens"] == 1  # never honoured
    store.record_login("alice", "10.0.0.1", 165.0, token=("newer", 900.0))
    assert stored_tokens() == {"new", "newer"}  # the first login after the minute tidied up
    store.close()


def test_a_commit_that_fails_leaves_the_store_usable(tmp_path, monkeypatch):
    store = UserStore(tmp_path / "auth.db")
    real = store._db
    # the connection's COMMIT fails once, as on a full disk; the transaction must be ended
    class FailingCommit:
        def __init__(self):
            self.failed = False

        def execute(self, sql, *args):
            if sql == "COMMIT" and not self.failed:
                self.failed = True
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(real, name)

    store._db = FailingCommit()
    with pytest.raises(sqlite3.OperationalError):
        store.add_user("alice", "alice", "hash", 1.0)
    assert not real.in_transaction
    assert store.add_user("alice", "alice", "hash", 1.0) is True  # and the next write works
    store._db = real
    assert store.counts(0)["users"] == 1
    store.close()
