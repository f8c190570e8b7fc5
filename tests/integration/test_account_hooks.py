"""The account hooks auth offers another front end (tests/plugins/accountfront.py uses only them),
and daemond_requires, which makes a front end's config say what it needs."""

from __future__ import annotations

from tests.support.irc import password, register_user

FRONT = "tests.plugins.accountfront"


def start(daemond_factory, **auth):
    from tests.support.chat import CHEAP_ARGON2

    return daemond_factory({"front": {"plugins": [FRONT]}},
                           {"auth": {"argon2": CHEAP_ARGON2, "register_per_address": None, **auth}},
                           reload={"watch": False})


def test_hook_daemond_account_login(daemond_factory):
    d = start(daemond_factory, max_attempts=2, cooldown=600)
    register_user(d, "Alice")
    with d.client("front") as c:
        assert c.command("login alice wrong") == ([], "+OK bad-credentials wrong name or password")
        assert c.command("whoami") == ([], "+OK None")
        assert c.command(f"login alice {password('alice')}") == ([], "+OK ok Alice")  # the name as registered
        assert c.command("whoami") == ([], "+OK Alice")
    with d.client("front") as c:  # the failures count in auth's throttles, as /login's do
        assert c.command("login bob wrong") == ([], "+OK bad-credentials wrong name or password")
        final = c.command(f"login alice {password('alice')}")[1]
        assert final.startswith("+OK too-many-attempts too many failed logins from 127.0.0.1; try again in "), final
    log = d.config.log_file.read_text()
    assert "login Alice from 127.0.0.1 (password)" in log and "wrong" not in log.replace("wrong password", "")


def test_hook_daemond_account_login_without_auth(daemond_factory):
    d = daemond_factory({"front": {"plugins": [FRONT]}}, reload={"watch": False})
    with d.client("front") as c:
        assert c.command("login alice whatever") == ([], "+OK none")
        assert c.command("exists alice") == ([], "+OK None")


def test_hook_daemond_account_exists(daemond_factory):
    d = start(daemond_factory)
    register_user(d, "Alice")
    with d.client("front") as c:
        assert c.command("exists ALICE") == ([], "+OK True")
        assert c.command("exists bob") == ([], "+OK False")
        assert c.command("exists not/a/name") == ([], "+OK False")


def test_hook_daemond_account_logout(daemond_factory):
    d = start(daemond_factory, max_sessions_per_user=1)
    register_user(d, "alice")
    first = d.client("front")
    assert first.command(f"login alice {password('alice')}") == ([], "+OK ok alice")
    with d.client("front") as second:
        assert second.command(f"login alice {password('alice')}")[1] == \
            "+OK too-many-sessions alice has 1 sessions logged in already; end one before you log in again"
    first.command("/quit")
    first.close()
    with d.client("front") as third:  # the first session's place was given back when it closed
        for _ in range(50):
            final = third.command(f"login alice {password('alice')}")[1]
            if final == "+OK ok alice":
                break
        assert final == "+OK ok alice"


def test_hook_daemond_requires(daemond_check_config):
    result = daemond_check_config({"irc": {"plugins": ["irc"]},
                                   "chat": {"plugins": ["tests.plugins.fakelogin", "chat"]}})
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if "needs the plugin" in line]
    assert len(problems) == 1 and problems[0].endswith(
        "plugin 'irc' needs the plugin 'auth' loaded too: list it in a listener's plugins: or give it a "
        "plugins.auth: section"), result.stderr
    assert daemond_check_config({"irc": {"plugins": ["irc"]}}, {"auth": {}, "chat": {}}).returncode == 0
