"""The operator's side: clear-auth, users list|add|del|passwd, and the log (issue 3, "Must have" 5, 7, 10)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from daemon import CommandError
from daemon.commands import UsageError
from tests.support.auth import commands_of, connect, logged_in_as, plugin_of, register, run_command, start


def test_the_plugin_contributes_clear_auth_and_users(daemond_factory):
    d = start(daemond_factory)
    commands = commands_of(d)
    assert sorted(commands) == ["clear-auth", "users"]
    assert commands["clear-auth"].confirm == "Delete every user and token?"
    described = commands["users"].describe()
    assert [a["name"] for a in described["args"]] == ["action", "name", "password"]
    assert described["args"][0]["choices"] == ["list", "add", "del", "passwd"]


def test_clear_auth_empties_the_store_and_logged_in_users_stay_connected(daemond_factory):
    d = start(daemond_factory)
    alice, token = register(d, "alice", "password-1")
    register(d, "bob", "password-2")[0].close()
    assert logged_in_as(d, alice) == "alice"

    result = run_command(d, "clear-auth")
    assert result.startswith("deleted 2 users and 2 tokens")
    assert plugin_of(d).store.counts(0) == {"users": 0, "tokens": 0}
    assert run_command(d, "users", action="list") == []
    # alice is still connected and served
    alice.send(b"still here\n")
    assert alice.read_line() == "still here"
    assert logged_in_as(d, alice) == "alice"
    # but nobody can log in with what was deleted, and the names are free again
    client, greeting = connect(d)
    assert greeting.startswith("+OK welcome;")  # the address->user hint went too
    assert client.command("/login bob password-2")[1].startswith("-ERR bad-credentials ")
    assert client.command(f"/login-token {token}")[1].startswith("-ERR bad-token ")
    assert client.command("/register alice new-password")[1].startswith("+OK registered")
    client.close()
    alice.close()
    assert "clear-auth deleted 2 users and 2 tokens" in (d.config.state_dir / "daemond.log").read_text()


def test_users_add_list_passwd_del(daemond_factory):
    d = start(daemond_factory)
    assert run_command(d, "users", action="add", name="Carol", password="operator-pw") == "added Carol"
    register(d, "dave", "password-4", source="127.0.0.5")[0].close()
    listed = run_command(d, "users", action="list")
    assert [(u["name"], u["last_ip"]) for u in listed] == [("Carol", None), ("dave", "127.0.0.5")]
    assert listed[0]["created"].endswith("Z") and listed[0]["last_login"] is None
    assert "hash" not in listed[0]

    client, _ = connect(d)
    _, final = client.command("/login carol operator-pw")
    assert final.startswith("+OK logged in as Carol")
    token = final.split("token=")[1]
    client.close()

    assert run_command(d, "users", action="passwd", name="carol", password="changed-pw").startswith(
        "changed the password of carol")
    client, _ = connect(d)
    assert client.command("/login carol operator-pw")[1].startswith("-ERR bad-credentials ")
    assert client.command(f"/login-token {token}")[1].startswith("-ERR bad-token ")  # revoked
    assert client.command("/login carol changed-pw")[1].startswith("+OK logged in as Carol")
    client.close()

    assert run_command(d, "users", action="del", name="CAROL") == "deleted CAROL and their tokens"
    assert [u["name"] for u in run_command(d, "users", action="list")] == ["dave"]


@pytest.mark.parametrize("args, message", [
    ({"action": "add", "name": "dave", "password": "password-9"}, "dave already exists"),
    ({"action": "add", "name": "DAVE", "password": "password-9"}, "DAVE already exists"),
    ({"action": "add", "name": "new", "password": "short"}, "passwords need at least 8 characters"),
    ({"action": "add", "name": "new"}, "no password given"),
    ({"action": "add", "name": "bad name", "password": "password-9"}, "bad name 'bad name'"),
    ({"action": "del", "name": "nobody"}, "no user nobody"),
    ({"action": "passwd", "name": "nobody", "password": "password-9"}, "no user nobody"),
    ({"action": "del"}, "which user?"),
])
def test_users_refusals(daemond_factory, args, message):
    d = start(daemond_factory)
    register(d, "dave", "password-4")[0].close()
    with pytest.raises(CommandError, match=message):
        run_command(d, "users", **args)


def test_users_action_must_be_known(daemond_factory):
    d = start(daemond_factory)
    with pytest.raises(UsageError, match="action must be one of list, add, del, passwd"):
        run_command(d, "users", action="drop")


def test_no_password_ever_reaches_the_log(daemond_factory):
    d = start(daemond_factory, max_attempts=3)
    secrets = ["Secret-register-1", "Secret-wrong-2", "Secret-prompt-3", "Secret-newuser-4", "Secret-operator-5",
               "Secret-passwd-6", "Secret-throttled-7", "Secret-short"]
    alice, token = register(d, "alice", secrets[0])
    alice.close()
    client, _ = connect(d)
    client.command(f"/login alice {secrets[1]}")
    client.command(f"/login nobody {secrets[1]}")
    client.command("alice")
    client.command(secrets[2])
    client.command(f"/login alice {secrets[6]}")  # third failure: now throttled
    client.command(f"/login alice {secrets[6]}")
    client.command(f"/register bob {secrets[7]}")
    client.close()
    client, _ = connect(d, source="127.0.0.2")
    client.command("newuser")
    client.command(secrets[3])
    client.close()
    run_command(d, "users", action="add", name="carol", password=secrets[4])
    run_command(d, "users", action="passwd", name="carol", password=secrets[5])
    d.stop()
    log = (d.config.state_dir / "daemond.log").read_text()
    assert "login failed: alice" in log and "registered newuser" in log and "added user carol" in log
    for secret in [*secrets, token]:
        assert secret not in log
        assert secret.lower() not in log.lower()


def offline(config_path, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "plugins.auth", "-c", str(config_path), *args],
                          input=stdin, capture_output=True, text=True, timeout=30, check=False)


def test_offline_admin_works_on_the_store_while_the_daemon_runs(daemond_factory):
    d = start(daemond_factory)
    added = offline(d.config_path, "users", "add", "erin", stdin="offline-pw-1\n")
    assert (added.returncode, added.stdout, added.stderr) == (0, "added erin\n", "")
    client, _ = connect(d)
    assert client.command("/login erin offline-pw-1")[1].startswith("+OK logged in as erin")
    client.close()
    listed = offline(d.config_path, "users", "list")
    assert [u["name"] for u in json.loads(listed.stdout)] == ["erin"]
    assert offline(d.config_path, "users", "passwd", "erin", stdin="offline-pw-2\n").returncode == 0
    refused = offline(d.config_path, "users", "add", "erin", stdin="offline-pw-3\n")
    assert refused.returncode == 1
    assert refused.stderr == "error: erin already exists (users passwd erin changes the password)\n"
    declined = offline(d.config_path, "clear-auth", stdin="n\n")
    assert (declined.returncode, declined.stdout) == (1, "Delete every user and token? [y/N] nothing done\n")
    assert [u["name"] for u in json.loads(offline(d.config_path, "users", "list").stdout)] == ["erin"]
    cleared = offline(d.config_path, "clear-auth", "--yes")
    assert cleared.stdout.startswith("deleted 1 users")
    assert offline(d.config_path, "users", "list").stdout == "[]\n"
    for result in (added, listed, refused, cleared):
        assert "Traceback" not in result.stderr
