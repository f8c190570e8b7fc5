"""What one IRC client gives the server that others are shown: nothing in it reaches another user's
terminal but visible text. Expected: a real name (USER's last parameter), shown to others by WHOIS
and WHO, is sanitised as chat sanitises messages — escape sequences, control characters (IRC's
colour, bold and CTCP \\x01 among them; a colour's digits stay, as in messages) and bidi controls
removed — and one with nothing visible left shows the nickname. Bound: a handful of lines."""

from __future__ import annotations

from tests.support.irc import SERVER as S
from tests.support.irc import IrcClient, password, register_user, start

HOSTILE = "\x1b[2J\x1b]0;owned\x07\u202eeman\u202c \x0304red\x03 \x02bold\x02 \x01VERSION\x01"


def test_a_real_name_is_sanitised_before_others_see_it(daemond_factory):
    server = start(daemond_factory, guests=True)
    register_user(server, "alice")
    with IrcClient(server.address("irc")) as evil, IrcClient(server.address("irc")) as blank, \
            IrcClient(server.address("irc")) as alice:
        evil.send("NICK evil")
        evil.send(f"USER evil 0 * :{HOSTILE}")
        evil.until("MOTD")
        blank.send("NICK blank")
        blank.send("USER blank 0 * :\x03\x02\u200b\x1b[0m")
        blank.until("MOTD")
        alice.register("alice", password("alice"))
        alice.send("WHOIS evil")
        assert alice.until(" 318 ")[0] == f":{S} 311 alice evil evil {S} * :eman 04red bold VERSION"
        alice.send("WHO evil")
        assert alice.until(" 315 ")[0] == f":{S} 352 alice * evil {S} {S} evil H :0 eman 04red bold VERSION"
        alice.send("WHOIS blank")
        assert alice.until(" 318 ")[0] == f":{S} 311 alice blank blank {S} * :blank"


def test_a_guest_cannot_pose_as_the_server_or_its_services(daemond_factory):
    # IRC users (and their clients' autosend scripts) send passwords to NickServ: a guest must not
    # be able to take that name, nor the server's own, to collect them or speak as the server
    server = start(daemond_factory, guests=True)
    for i, nick in enumerate(("NickServ", "chanserv", "SaslServ", S, S.upper())):
        with IrcClient(server.address("irc")) as guest:
            guest.send(f"NICK {nick}")
            guest.send("USER x 0 * :x")
            assert guest.read() == f":{S} 432 * {nick} :Erroneous nickname: reserved for the server and its services"
            # it may choose another (a new one each time: the last guest may not be gone yet)
            guest.send(f"NICK honest{i}")
            assert guest.until("MOTD")[0].startswith(f":{S} 001 honest{i} ")
