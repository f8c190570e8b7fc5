"""IRC registration: ``CAP``, ``NICK``, ``USER``, ``PASS``, SASL ``AUTHENTICATE``, then the
welcome (001-005) and the MOTD.

:class:`Registration` is the part of :class:`plugins.irc.connection.Connection` that runs
before a client is registered (and ``MOTD`` after): the login goes through auth's public
account hooks (``daemond_account_login``), so its throttles and ``require_tls`` apply as on the
line protocol. The constants here are the server's own limits, also used after registration.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone

from daemon import SessionEnd, __version__

from plugins.irc.message import fit, format_message

#: capabilities offered, in CAP LS order (sasl's value only to CAP LS 302 clients)
CAPS = ("batch", "echo-message", "message-tags", "sasl", "server-time")
NICK = re.compile(r"[A-Za-z0-9_.-]{1,32}", re.ASCII)  # auth's user names
CHANNEL_LEN = 33
VERSION = f"daemond-{__version__}"
#: SASL: a message is sent in chunks of 400 base64 bytes; more than this many is too long
SASL_CHUNK = 400
SASL_MAX_CHUNKS = 4
#: RPL_ISUPPORT's TARGMAX: the most distinct targets one line may name (None: as many as fit in it;
#: every target past the first still spends a flood-control token, as its own line would)
TARGMAX = {"JOIN": None, "NAMES": 1, "NOTICE": 4, "PART": None, "PRIVMSG": 4, "WHOIS": 1}
#: nicknames no guest may take: IRC users send passwords to NickServ (their clients' scripts too)
SERVICES = frozenset({"nickserv", "chanserv", "memoserv", "operserv", "saslserv", "hostserv", "botserv", "global"})


class Registration:
    """Registration commands, mixed into ``Connection`` (which provides ``session``, ``send``,
    ``numeric``, ``caps``, ``nick`` and the rest of the state they use)."""

    def _cap(self, sub: str, text: str) -> None:
        self.session.write(fit(format_message(self.server, "CAP", self.me, sub, text, trailing=True)))

    def cap(self, params: list[str]) -> None:
        sub = params[0].upper()
        if sub == "LS":
            if not self.registered:
                self.negotiating = True
            offered = ["sasl=PLAIN" if c == "sasl" and params[1:2] == ["302"] else c for c in CAPS]
            self._cap("LS", " ".join(offered))
        elif sub == "LIST":
            self._cap("LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            if len(params) < 2:
                self.numeric("410", "REQ", "Invalid CAP command")
                return
            if not self.registered:
                self.negotiating = True
            wanted = params[1].split()
            if all(w.lstrip("-") in CAPS for w in wanted):
                for w in wanted:
                    if w.startswith("-"):
                        self.caps.discard(w[1:])
                    else:
                        self.caps.add(w)
                self._cap("ACK", params[1])
            else:
                self._cap("NAK", params[1])
        elif sub == "END":
            self.negotiating = False
            self._try_register()
        else:
            self.numeric("410", params[0], "Invalid CAP command")

    def nick_command(self, params: list[str]) -> None:
        if not params or not params[0]:
            self.numeric("431", "No nickname given")
            return
        nick = params[0]
        if self.registered:
            if nick != self.nick:
                self.numeric("432", nick, "Nickname changes are not supported: your nickname is your account")
            return
        if not NICK.fullmatch(nick):
            self.numeric("432", nick, "Erroneous nickname")
            return
        if self.session.user is not None and nick.lower() != self.session.user.lower():
            nick = self.session.user  # logged in by SASL: the nickname is the account
        self.nick = nick
        self._try_register()

    def user_command(self, params: list[str]) -> None:
        if self.registered:
            self.numeric("462", "You may not reregister")
            return
        # others see the real name (WHOIS, WHO): sanitised as chat's text is; nothing visible: the nickname
        real = self.rooms.sanitize(params[3]).strip()
        shows = any(c.isprintable() and not c.isspace() for c in real)
        self.username, self.realname = params[0], real if shows else ""
        self._try_register()

    def pass_command(self, params: list[str]) -> None:
        if self.registered:
            self.numeric("462", "You may not reregister")
            return
        # the password is PASS's one parameter; irssi sends "PASS correct horse" without the ":"
        # that would make a password with spaces one parameter, so the words are joined again
        self.password = " ".join(params)

    def authenticate(self, params: list[str]) -> None:
        if self.registered or self.session.user is not None:
            self.numeric("907", "You have already authenticated using SASL")
            return
        if "sasl" not in self.caps:
            self.numeric("904", "SASL authentication failed")
            return
        arg = params[0]
        if arg == "*":
            self.sasl = None
            self.numeric("906", "SASL authentication aborted")
            return
        if self.sasl is None:
            if arg.upper() != "PLAIN":
                self.numeric("908", "PLAIN", "are available SASL mechanisms")
                self.numeric("904", "SASL authentication failed")
                return
            self.sasl = []
            self.session.write(b"AUTHENTICATE +\r\n")
            return
        if len(arg) > SASL_CHUNK or len(self.sasl) >= SASL_MAX_CHUNKS:
            self.sasl = None
            self.numeric("905", "SASL message too long")
            return
        if arg != "+":
            self.sasl.append(arg)
        if len(arg) == SASL_CHUNK:
            return  # more follows
        chunks, self.sasl = self.sasl, None
        try:
            authzid, authcid, password = base64.b64decode("".join(chunks), validate=True).decode("utf-8").split("\0")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            self.numeric("904", "SASL authentication failed")
            return
        if authzid and authzid.lower() != authcid.lower():
            self.numeric("904", "SASL authentication failed")
            return
        token, text = self._login(authcid, password)
        if token != "ok":
            self.numeric("904", f"SASL authentication failed: {text}")
            return
        self.nick = text if self.nick is None or self.nick.lower() != text.lower() else self.nick
        self.numeric("900", self.prefix(text), text, f"You are now logged in as {text}")
        self.numeric("903", "SASL authentication successful")

    def _login(self, name: str, password: str) -> tuple[str, str]:
        result = self.session.daemon.hook.daemond_account_login(session=self.session, name=name, password=password)
        if result is None:
            return "unavailable", "no login plugin is loaded"
        return result

    def _try_register(self) -> None:
        if self.registered or self.negotiating or self.nick is None or self.username is None:
            return
        if self.session.user is not None:
            self.password = None  # logged in by SASL: a PASS sent too is not kept
        else:
            if self.password is not None:
                password, self.password = self.password, None
                token, text = self._login(self.nick, password)
                if token != "ok":
                    self.numeric("464", text)
                    self.error("Bad password")
                    raise SessionEnd("bad-credentials")
                self.nick = text
            elif self.settings["guests"]:
                if self.nick.lower() in SERVICES or self.nick.lower() == self.server.lower():
                    self.numeric("432", self.nick, "Erroneous nickname: reserved for the server and its services")
                    self.nick = None
                    return
                if self.session.daemon.hook.daemond_account_exists(name=self.nick):
                    self.numeric("433", self.nick, "Nickname is registered: log in with SASL or PASS to use it")
                    self.nick = None
                    return
                if self.rooms.user(self.nick) is not None:  # on any node, in cluster mode
                    self.numeric("433", self.nick, "Nickname is already in use")
                    self.nick = None
                    return
            else:
                self.numeric("464", "Password required: log in with SASL PLAIN or PASS")
                self.error("Password required")
                raise SessionEnd("bad-credentials")
        guest = self.session.user is None
        if guest:
            self.session.login(self.nick)
        self.nick = self.session.user
        try:  # a guest never replaces anyone; an account as chat's on_duplicate_login says
            old = self.rooms.connect(self.session, self.on_event, replace=False if guest else None)
        except Exception as exc:
            if getattr(exc, "token", None) != "already-connected":
                raise
            self.numeric("433", self.nick, "Nickname is already in use")
            self.error("Nickname is already in use")
            raise SessionEnd("duplicate") from None
        if old is not None:
            self.plugin.log.info("%s logged in again over IRC from %s; closing the older session",
                                 self.nick, self.session.peer_str)
            self.rooms.replaced(old, by=self.session)
        self.registered = True
        self.plugin.add(self)
        self._welcome()

    def _welcome(self) -> None:
        started = datetime.fromtimestamp(self.session.daemon.started_at, timezone.utc)
        self.numeric("001", f"Welcome to the {self.settings['network']} IRC network, {self.prefix(self.nick)}")
        self.numeric("002", f"Your host is {self.server}, running version {VERSION}")
        self.numeric("003", f"This server was created {started:%Y-%m-%d %H:%M:%S} UTC")
        self.numeric("004", self.server, VERSION, "i", "nt")
        self.numeric("005", "CASEMAPPING=ascii", "CHANTYPES=#", f"CHANNELLEN={CHANNEL_LEN}", "NICKLEN=32",
                     f"NETWORK={self.settings['network']}", "PREFIX=()", "CHANMODES=,,,nt", "UTF8ONLY",
                     "TARGMAX=" + ",".join(f"{c}:{'' if n is None else n}" for c, n in TARGMAX.items()),
                     "are supported by this server")
        self.motd([])

    def motd(self, params: list[str]) -> None:
        lines = [line for line in self.rooms.motd().splitlines() if line.strip()]
        if not lines:
            self.numeric("422", "MOTD File is missing")
            return
        self.numeric("375", f"- {self.server} Message of the day - ")
        for line in lines:
            self.numeric("372", f"- {line}")
        self.numeric("376", "End of /MOTD command.")
