"""``daemonctl``: drive a running daemond over its control socket.

A thin client of the JSON-lines protocol (:mod:`daemon.control.protocol`,
``docs/control.md``): it sends the command and its words, prints the reply and
exits 0 (ok), 1 (the daemon reported failure), 2 (usage error) or 3 (no daemon
answers). It imports only the standard library and daemond's protocol module
(plus ``daemon.paths`` and ``daemon.quickyaml`` when the socket has to be
found through the config, which it reads line by line — PyYAML only for
configs in fancier YAML), so
that it starts fast: see bench/README-ctl.md.
"""

from __future__ import annotations

import _socket  # the C module: socket.py's own imports (enum, selectors) cost more than the round trip
import os
import sys
import time

from daemon.version import __version__
from daemon.control import protocol

USAGE = """\
usage: daemonctl [-c FILE | -s SOCKET] [--json] [-y] [-t SECONDS] COMMAND [ARG...]

Drive a running daemond over its control socket.

commands of every daemond (`daemonctl help` lists the daemon's own, plugins' too):
  status                 pid, uptime, config, listeners, connections, plugins, last reload
  pause | resume         refuse new connections at once / accept them again
  stop                   graceful shutdown; returns when the daemon has stopped
  reload                 re-read and apply the config; returns when applied or refused
  logs [-n LINES] [-f]   the last LINES log lines (default 50); -f streams new ones until Ctrl-C
  clear-logs             empty the log file and the in-memory lines
  plugins                loaded plugins: version, source, listeners, errors
  kick NAME [--reason TEXT]  end every session of user NAME on every listener
  cluster                the cluster's live nodes: address, users, last heartbeat
  help [COMMAND]         the daemon's commands, or one command's arguments

options:
  -c, --config FILE      find the socket through this config (default: $DAEMOND_CONFIG,
                         ./etc/daemond.yaml, /etc/daemond/daemond.yaml)
  -s, --socket SOCKET    the control socket (default: $DAEMOND_SOCKET, else from the config)
  --json                 print the daemon's JSON replies (one per line) instead of text
  -y, --yes              do not ask before commands that want confirmation
  -t, --timeout SECONDS  wait this long for a reply (default 60; 0 waits forever)
  --password-file FILE   when the command needs a password, read it from FILE's first line
                         (a file only its owner may read) instead of asking
  (--json, --yes and --password-file may also follow the command; the others go before it)
  -h, --help             this help
  --version              daemonctl's version

exit status: 0 ok, 1 the daemon reported failure, 2 usage error, 3 no daemon answers
"""


class Exit(Exception):
    """End daemonctl with ``status``, printing ``message`` (one line) to stderr."""

    def __init__(self, status: int, message: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message


class Options:
    config: str | None = None
    socket: str | None = None
    json = False
    yes = False
    timeout: float | None = 60.0
    password_file: str | None = None
    streaming = False  # set once the daemon streams: Ctrl-C then just ends the stream
    command = ""
    argv: list[str]


def parse_args(argv: list[str]) -> Options:
    opts = Options()
    words = list(argv)

    def value(option: str) -> str:
        if not words:
            raise Exit(protocol.EXIT_USAGE, f"{option} needs a value (see daemonctl --help)")
        return words.pop(0)

    while words and words[0].startswith("-") and words[0] != "-":
        word = words.pop(0)
        name, eq, attached = word.partition("=")
        if eq:
            words.insert(0, attached)
        if name in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise Exit(protocol.EXIT_OK)
        if name == "--version":
            print(f"daemonctl {__version__}")
            raise Exit(protocol.EXIT_OK)
        if name in ("-c", "--config"):
            opts.config = value(name)
        elif name in ("-s", "--socket"):
            opts.socket = value(name)
        elif name == "--":
            break
        elif not _common_option(opts, name, value):
            raise Exit(protocol.EXIT_USAGE, f"unknown option {name} (see daemonctl --help)")
    if not words:
        sys.stderr.write(USAGE.split("\n\n")[0] + "\n")
        raise Exit(protocol.EXIT_USAGE, "no command given (try: daemonctl help)")
    opts.command = words.pop(0)
    # daemonctl's own options may follow the command too (as people type them: `users add
    # gina --password-file F`, `status --json`); after "--" every word is the command's
    opts.argv = []
    while words:
        word = words.pop(0)
        if word == "--":
            opts.argv.append(word)
            opts.argv.extend(words)
            break
        name, eq, attached = word.partition("=")
        if name in AFTER_COMMAND:
            if eq:
                words.insert(0, attached)
            _common_option(opts, name, value)
        else:
            opts.argv.append(word)
    return opts


#: daemonctl's options that may also come after the command; short ones (-t, -y) are the
#: command's there (a plugin's command may define ``-t``)
AFTER_COMMAND = ("--json", "--yes", "--password-file")


def _common_option(opts: Options, name: str, value) -> bool:
    """Apply one of the options allowed before and after the command; False if ``name`` is none."""
    if name == "--json":
        opts.json = True
    elif name in ("-y", "--yes"):
        opts.yes = True
    elif name == "--password-file":
        opts.password_file = value(name)
    elif name in ("-t", "--timeout"):
        text = value(name)
        try:
            seconds = float(text)
        except ValueError:
            raise Exit(protocol.EXIT_USAGE, f"{name}: not a number: {text!r}") from None
        opts.timeout = seconds if seconds > 0 else None
    else:
        return False
    return True


def find_socket(opts: Options, environ=os.environ) -> str:
    """``--socket``, ``$DAEMOND_SOCKET``, else where the config puts it (as daemond decides)."""
    if opts.socket:
        return opts.socket
    if environ.get("DAEMOND_SOCKET"):
        return environ["DAEMOND_SOCKET"]
    from daemon import paths  # only when the socket is not given

    config = paths.search_config(opts.config, environ)
    if config is None:
        state_dir, setting = paths.state_dir(None, "", environ), None
    else:
        settings = _read_config(config)
        setting = settings["socket"]
        state_dir = paths.state_dir(settings["state_dir"], config, environ)
    path = paths.control_socket(setting, state_dir, environ)
    if setting is None and not os.path.exists(path):
        # run by hand, without the service's $RUNTIME_DIRECTORY: the service's socket
        system = paths.SYSTEMD_CONTROL_SOCKET
        try:
            os.stat(system)
            return system
        except PermissionError:  # its directory is closed to us: say so, not "no such socket" here
            raise Exit(protocol.EXIT_NO_DAEMON, f"the system daemon's control socket {system} is there, but you "
                       f"(uid {os.getuid()}) may not reach it: run daemonctl as root (sudo daemonctl ...), or join "
                       "the group named in control.group (docs/operations.md, \"Control for a group\")") from None
        except OSError:
            pass
    return path


def _read_config(path: str) -> dict:
    """``state_dir`` and ``control.socket`` of the config at ``path``."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise Exit(protocol.EXIT_USAGE, f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Exit(protocol.EXIT_USAGE, f"cannot read config {path}: not UTF-8") from None
    from daemon.quickyaml import quick_control_settings

    quick = quick_control_settings(text)
    if quick is not None:
        return quick
    import yaml  # only for configs the quick reader does not follow

    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise Exit(protocol.EXIT_USAGE, f"cannot read config {path}: {' '.join(str(exc).split())} "
                   "(daemond --check-config shows every problem)") from None
    if not isinstance(doc, dict):
        raise Exit(protocol.EXIT_USAGE, f"config {path} is not a mapping (daemond --check-config shows why)")
    control = doc.get("control") if isinstance(doc.get("control"), dict) else {}
    return {"state_dir": doc.get("state_dir"), "socket": control.get("socket")}


class Connection:
    """A connection to the control socket, reading reply lines."""

    def __init__(self, path: str, timeout: float | None):
        self.path = path
        self.buffer = b""
        from daemon.files import PrivateFileError, check_trusted_socket  # os and stat: no import cost

        try:  # before anything is sent: a socket another user could have put there may not be the daemon's
            check_trusted_socket(path)
        except PrivateFileError as exc:
            raise Exit(protocol.EXIT_NO_DAEMON, f"{exc}; nothing was sent") from None
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self._connect(timeout)
        except FileNotFoundError:
            self._fail("no such socket (is daemond running? see -s, -c, $DAEMOND_SOCKET)")
        except ConnectionRefusedError:
            self._fail("connection refused (a stale socket: daemond is not running)")
        except PermissionError:
            raise Exit(protocol.EXIT_NO_DAEMON, f"cannot use the control socket {path}: permission denied "
                       "(run as root, as daemond's user or as a member of control.group)") from None
        except TimeoutError:
            self._fail("timed out connecting")
        except OSError as exc:
            self._fail(exc.strerror or str(exc))

    def _connect(self, timeout: float | None) -> None:
        # A Unix socket whose backlog is full refuses a non-blocking connect with EAGAIN
        # instead of waiting: retry until the daemon takes us (it serves bursts in turn).
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                self.sock.connect(self.path)
                return
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def _fail(self, why: str):
        self.sock.close()
        raise Exit(protocol.EXIT_NO_DAEMON, f"no daemond answers at {self.path}: {why}")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            pass  # the daemon closed on us (a refused uid): its reason is still there to read

    def readline(self) -> bytes:
        """The next line, with its newline; what is left (maybe b"") at end of connection."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def read(self) -> tuple[bytes, dict] | None:
        """The next reply line (raw and parsed), or None at end of connection."""
        try:
            line = self.readline()
        except TimeoutError:
            raise Exit(protocol.EXIT_NO_DAEMON, f"no reply from daemond at {self.path} in time (see --timeout)") from None
        except OSError as exc:
            raise Exit(protocol.EXIT_NO_DAEMON, f"lost the connection to daemond at {self.path}: {exc.strerror or exc}") from None
        if not line:
            return None
        try:
            return line, protocol.parse_reply(line)
        except protocol.ProtocolError as exc:
            raise Exit(protocol.EXIT_FAILED, exc.message) from None

    def wait_closed(self) -> bool:
        """Read until the daemon closes the connection; False on timeout."""
        try:
            while self.readline():
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


def run(opts: Options) -> int:
    path = find_socket(opts)
    conn = Connection(path, opts.timeout)
    try:
        confirmed = opts.yes
        asked: dict[str, str] = {}  # arguments the daemon asked for (a password), by name
        while True:
            conn.send(protocol.request(opts.command, argv=opts.argv, args=asked or None, confirmed=confirmed,
                                       text=not opts.json))
            raw, reply = read_reply(conn, opts)
            error = reply.get("error") or {}
            if error.get("code") == protocol.CONFIRM and not confirmed:
                confirmed = ask(opts.command, error.get("message", "are you sure?"))
                continue
            details = error.get("details") or {}
            if error.get("code") == protocol.ARGUMENT_NEEDED and details.get("argument") not in asked:
                value = read_password_file(opts.password_file) if opts.password_file and details.get("secret") \
                    else ask_value(details)
                if value is not None:
                    asked[details["argument"]] = value
                    continue
            break
        show(raw, reply, opts)
        if reply.get("ok") and opts.command == "stop":
            if not conn.wait_closed():
                raise Exit(protocol.EXIT_FAILED, f"daemond did not finish stopping within {opts.timeout:g}s")
            if not opts.json:
                print("daemond stopped")
        return protocol.exit_status(reply)
    finally:
        conn.close()


def read_reply(conn: Connection, opts: Options) -> tuple[bytes, dict]:
    """Print stream lines as they come; return the final reply, raw and parsed."""
    while True:
        got = conn.read()
        if got is None:
            raise Exit(protocol.EXIT_NO_DAEMON, f"daemond at {conn.path} closed the connection without replying")
        raw, reply = got
        if reply.get("streaming"):
            conn.sock.settimeout(None)  # a stream may be quiet for long: wait as long as it lasts
            opts.streaming = True
            if opts.json:
                sys.stdout.write(raw.decode())
            continue
        if "stream" in reply:
            if opts.json:
                sys.stdout.write(raw.decode())
            else:
                print(reply["stream"])
            sys.stdout.flush()
            continue
        return raw, reply


def show(raw: bytes, reply: dict, opts: Options) -> None:
    if opts.json:
        sys.stdout.write(raw.decode())
    elif reply.get("ok"):
        text = reply.get("text")
        if text:
            print(text)
    else:
        print(f"daemonctl: {(reply.get('error') or {}).get('message', 'failed')}", file=sys.stderr)


def ask(command: str, question: str) -> bool:
    """Ask on the terminal; without one, refuse (--yes is how scripts say yes)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise Exit(protocol.EXIT_USAGE, f"{command} asks: {question} — answer on a terminal, or pass --yes")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise Exit(protocol.EXIT_FAILED, f"{command}: not confirmed; nothing done")
    return True


def read_password_file(path: str) -> str:
    """The first line of ``path``, which only its owner may read (as OpenSSH treats a key)."""
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & 0o077:
                raise Exit(protocol.EXIT_USAGE, f"--password-file {path} may be read by others "
                           f"(mode {mode & 0o777:04o}): chmod 600 it; nothing sent")
            first = file.readline().decode("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise Exit(protocol.EXIT_USAGE, f"--password-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise Exit(protocol.EXIT_USAGE, f"--password-file {path}: not UTF-8 text") from None
    if not first:
        raise Exit(protocol.EXIT_USAGE, f"--password-file {path}: its first line is empty")
    return first


def ask_value(details: dict) -> str | None:
    """An argument the command needs: asked on the terminal (a secret without echo; a new one
    twice), or a secret read from stdin when that is not a terminal (scripts pipe passwords in,
    once). None: cannot ask."""
    prompt = f"{details.get('prompt') or details.get('argument')}: "
    if details.get("secret"):
        from daemon.control.secret_input import SecretsDiffer, read_secret

        try:
            value = read_secret(prompt, bool(details.get("confirm")))
        except SecretsDiffer:
            raise Exit(protocol.EXIT_FAILED, f"the {details.get('argument')}s you typed differ; nothing done") from None
    elif sys.stdin.isatty() and sys.stderr.isatty():
        sys.stderr.write(prompt)
        sys.stderr.flush()
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        return None
    return value or None


#: The error code of daemonctl's own failures, by exit status, in ``--json`` error objects.
OWN_ERRORS = {protocol.EXIT_FAILED: "failed", protocol.EXIT_USAGE: "usage", protocol.EXIT_NO_DAEMON: "no-daemon"}


def json_error(exc: Exit) -> str:
    """daemonctl's own failure as the daemon's error replies look: ``{"ok": false, "error": {...}}``."""
    import json

    error = {"code": OWN_ERRORS.get(exc.status, "failed"), "message": exc.message, "source": "daemonctl"}
    return json.dumps({"ok": False, "error": error})


def _options(argv: list[str]) -> list[str]:
    return argv[: argv.index("--")] if "--" in argv else argv


def main(argv: list[str] | None = None) -> int:
    opts = None
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
        return run(opts)
    except Exit as exc:
        if exc.message:
            print(f"daemonctl: {exc.message}", file=sys.stderr)
            wants_json = opts.json if opts is not None else "--json" in _options(argv)
            if wants_json and exc.status != protocol.EXIT_OK:
                print(json_error(exc), flush=True)  # a script reading stdout gets an answer too
        return exc.status
    except KeyboardInterrupt:
        if opts is not None and opts.streaming:
            return protocol.EXIT_OK  # Ctrl-C is how `logs -f` ends
        print("\ndaemonctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output left (daemonctl logs | head): quietly done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return protocol.EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
