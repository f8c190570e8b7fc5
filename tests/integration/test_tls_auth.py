"""TLS and the built-in login: require_tls, and a chat between a TLS user and a plaintext one."""

from __future__ import annotations

import pytest

from daemon.testing import LineClient
from tests.support.chat import CHEAP_ARGON2, IN_PROCESS, login, password
from tests.support.robustness import wait_until
from tests.support.tls import Certs, tls_settings


@pytest.fixture
def certs(tmp_path):
    return Certs(tmp_path / "tls")


def start(daemond_factory, certs, require_tls="auto"):
    crt, key = certs.issue()
    listeners = {"plain": {"plugins": ["auth", "chat"]},
                 "secure": {"plugins": ["auth", "chat"], "tls": tls_settings(crt, key)}}
    plugins = {"auth": {"argon2": CHEAP_ARGON2, "max_attempts": 1000, "require_tls": require_tls},
               "chat": {"rate": 0}}
    return daemond_factory(listeners, plugins, **IN_PROCESS)


def tls_client(d, certs, listener="secure") -> LineClient:
    client = LineClient(*d.address(listener))
    client.sock = certs.client_context().wrap_socket(client.sock, server_hostname="localhost")
    return client


def test_a_tls_user_and_a_plaintext_loopback_user_chat_in_one_room(daemond_factory, certs):
    d = start(daemond_factory, certs)  # auto: loopback may log in over plaintext
    with tls_client(d, certs) as alice, d.client("plain") as bob:
        login(alice, "alice")
        login(bob, "bob")
        assert d.daemon.sessions("secure")[0].tls.version.startswith("TLSv1.")
        assert d.daemon.sessions("plain")[0].tls is None
        alice.send_line("hello over TLS \u00e9")
        assert any("hello over TLS \u00e9" in bob.read_line() for _ in range(5))
        bob.send_line("hi from plaintext")
        assert any("hi from plaintext" in alice.read_line() for _ in range(5))


@pytest.mark.parametrize("command", ["/login alice {pw}", "/register carol {pw}", "/login-token abc", "alice"])
def test_require_tls_true_refuses_passwords_over_plaintext_even_from_loopback(daemond_factory, certs, command):
    d = start(daemond_factory, certs, require_tls=True)
    with tls_client(d, certs) as alice:
        login(alice, "alice")  # over TLS a password is fine
    with d.client("plain") as c:
        assert c.read_line().startswith("+OK")
        _, final = c.command(command.format(pw=password("alice")))
        assert final.startswith("-ERR tls-required"), final
    assert d.daemon.sessions("plain") == [] or all(s.user is None for s in d.daemon.sessions("plain"))


def test_require_tls_false_and_auto_let_loopback_log_in_over_plaintext(daemond_factory, certs):
    for rule in ("auto", False):
        d = start(daemond_factory, certs, require_tls=rule)
        with d.client("plain") as c:
            login(c, "dave")


def test_require_tls_rejects_other_values(tmp_path):
    import subprocess

    from tests.support.process import installed
    path = tmp_path / "d.yaml"
    path.write_text("listeners:\n  c:\n    port: 0\n    plugins: [auth]\nplugins:\n  auth:\n    require_tls: maybe\n")
    proc = subprocess.run([installed("daemond"), "--check-config", "-c", str(path)], capture_output=True, text=True)
    assert "plugins.auth.require_tls: must be auto, true or false, not 'maybe'" in proc.stderr


def cert_login_daemon(daemond_factory, certs, cert_login=True, client_cert="optional"):
    crt, key = certs.issue()
    listeners = {"plain": {"plugins": ["auth", "echo"]},
                 "secure": {"plugins": ["auth", "echo"],
                            "tls": tls_settings(crt, key, client_cert=client_cert, client_ca=str(certs.ca_file))}}
    plugins = {"auth": {"argon2": CHEAP_ARGON2, "max_attempts": 1000, "cert_login": cert_login}}
    d = daemond_factory(listeners, plugins, **IN_PROCESS)
    with d.client("plain") as alice:  # Alice registers once, over loopback
        assert alice.read_line().startswith("+OK")
        assert alice.command(f"/register Alice {password('alice')}")[1].startswith("+OK")
    return d


def client_with_certificate(d, certs, common_name: str | None) -> LineClient:
    context = certs.client_context()
    if common_name is not None:
        certs.ca.issue_cert(f"{common_name}@example.org", common_name=common_name).configure_cert(context)
    client = LineClient(*d.address("secure"))
    client.sock = context.wrap_socket(client.sock, server_hostname="localhost")
    return client


@pytest.mark.parametrize("client_cert", ["optional", "required"])
def test_a_client_certificate_of_a_registered_user_logs_in_at_connect(daemond_factory, certs, client_cert):
    d = cert_login_daemon(daemond_factory, certs, client_cert=client_cert)
    with client_with_certificate(d, certs, "alice") as client:
        first = client.read_line()
        assert first.startswith("+OK logged in as Alice token="), first
        [session] = d.daemon.sessions("secure")
        assert session.user == "Alice" and session.tls.peer_cn == "alice"
        client.send(b"raw\0bytes\n")  # echo behind auth gets the connection
        assert client.read_line() == "raw\0bytes"


def test_a_certificate_naming_no_user_or_none_gets_the_greeting(daemond_factory, certs):
    d = cert_login_daemon(daemond_factory, certs)
    for cn in ("mallory", None):
        with client_with_certificate(d, certs, cn) as client:
            greeting = client.read_line()
            assert greeting.startswith("+OK") and "log in" in greeting, greeting
            assert [s.user for s in d.daemon.sessions("secure")] == [None]
        assert wait_until(lambda: not d.daemon.sessions("secure"), 5)  # the next one is then the only one


def test_cert_login_is_off_unless_set(daemond_factory, certs):
    d = cert_login_daemon(daemond_factory, certs, cert_login=False)
    with client_with_certificate(d, certs, "alice") as client:
        greeting = client.read_line()
        assert "log in" in greeting, greeting
        [session] = d.daemon.sessions("secure")
        assert session.user is None and session.tls.peer_cn == "alice"
