"""The control socket's endpoint: a Unix stream socket speaking JSON lines to daemonctl and scripts.

One thread (``control``) accepts; each client is served by a short-lived
thread of its own (``control-client-N``), at most :data:`MAX_CLIENTS` at once
— further clients wait in the socket's backlog until one leaves, so a burst
of a hundred ``daemonctl status`` is answered in full. Every request goes
through the daemon's one :class:`~daemon.commands.CommandRegistry`.

When the daemon is out of file descriptors, the control socket still
answers: it accepts with spares borrowed from the daemon's
:class:`~daemon.descriptors.DescriptorReserve`, given back when the client
leaves.

Who may connect is checked with ``SO_PEERCRED``: root, the daemon's own uid,
and members of ``control.group`` (the peer's groups from ``SO_PEERGROUPS``).
Anyone else gets one ``forbidden`` error line and is closed.

The socket is created mode 0660 (the umask is set around ``bind``, so it is
never wider) in a directory of mode 0750 that is created if missing; a stale
socket left by a crashed daemon is replaced, a live one — another daemond —
is refused. The directory must be trusted (:func:`daemon.files.check_trusted_dir`:
owned by root or the daemon's user, writable by no one else), or the daemon does
not start: its owner could replace the socket and read what ``daemonctl`` sends.
"""

from __future__ import annotations

import grp
import logging
import os
import select
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import Any

from daemon.commands import ArgumentNeeded, CommandError, CommandRegistry, ConfirmationNeeded, UsageError
from daemon.control import protocol
from daemon.descriptors import EXHAUSTED, DescriptorReserve
from daemon.logs import limited
from daemon.lines import LineFramer, TooLong
from daemon.files import PrivateFileError, check_trusted_dir, make_dirs

log = logging.getLogger("daemond.control")

#: Clients served at once (a thread each); more wait in the backlog until one leaves.
MAX_CLIENTS = 128
#: Seconds a client may stay silent between requests before it is closed.
IDLE_TIMEOUT = 300.0
#: Seconds stop() waits for a client thread still running a command.
JOIN_TIMEOUT = 5.0
#: sizeof(struct ucred): pid, uid, gid
_UCRED = struct.Struct("3i")
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13
#: The longest path an AF_UNIX address holds (sun_path is 108 bytes with its NUL).
MAX_PATH = 107


class ControlError(Exception):
    """The control socket cannot be set up; the message is one line for the operator.

    ``config``: the config asks what this process cannot do (a restart would fail the same way)."""

    def __init__(self, message: str, config: bool = False):
        super().__init__(message)
        self.config = config


#: Where the docs say how to give a group the control socket under the systemd unit.
GROUP_HOWTO = "docs/operations.md, \"Control for a group\""


def group_problem(group: str | None) -> str | None:
    """Why this process cannot give ``group`` its control socket, or None when it can: the group
    must exist, and the process be root or have it among its groups (a process may give its
    own file only to a group it is in; under the systemd unit that is its ``Group=``)."""
    if group is None:
        return None
    try:
        gid = _resolve_group(group)
    except ControlError as exc:
        return str(exc)
    if os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups():
        return None
    return (f"control.group {group}: daemond (uid {os.geteuid()}) is not in group {group}, so it cannot give it the "
            f"control socket; under systemd give the service that group with Group={group} in a drop-in "
            f"({GROUP_HOWTO})")


class ControlServer:
    """The control socket and the threads serving it. Owned by the Daemon: bind, start, stop."""

    def __init__(self, commands: CommandRegistry, path: Path, group: str | None = None,
                 on_plugin_error: Callable[[str | None], None] | None = None,
                 descriptors: DescriptorReserve | None = None):
        self.commands = commands
        self._descriptors = descriptors if descriptors is not None else DescriptorReserve(0)
        #: told the plugin (None: the core) whose command raised unexpectedly, to count it
        self.on_plugin_error = on_plugin_error
        self.path = Path(path)
        self.group = group
        self._gid = _resolve_group(group) if group else None
        self._sock: socket.socket | None = None
        self._inode: int | None = None
        self._thread: threading.Thread | None = None
        # wakes the accepting thread out of select() at stop
        self._wake_r, self._wake_w = socket.socketpair()
        # _lock guards _clients, _stopping and the counters; _slot_free (a Condition
        # on it) wakes the accepting thread when a client leaves a full house.
        self._lock = threading.Lock()
        self._slot_free = threading.Condition(self._lock)
        self._clients: set[ControlClient] = set()
        self._stopping = False
        self._numbers = count(1)
        self.served = 0
        self.refused = 0

    # -- lifecycle ----------------------------------------------------------

    def bind(self) -> None:
        """Create the socket now, so that a failure stops the daemon's start."""
        path = self.path
        if len(os.fsencode(str(path))) > MAX_PATH:
            raise ControlError(f"control socket path {path} is too long ({len(os.fsencode(str(path)))} bytes, "
                               f"at most {MAX_PATH}); set control.socket to a shorter path")
        self._make_directory(path.parent)
        try:  # whoever else may write there could replace the socket and read what daemonctl sends
            check_trusted_dir(path.parent, "control socket directory")
        except PrivateFileError as exc:
            raise ControlError(str(exc)) from None
        self._replace_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # the socket is born 0660: never wider, not even for a moment
        try:
            sock.bind(str(path))
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot create control socket {path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        try:
            if self._gid is not None and os.lstat(path).st_gid != self._gid:  # born with it: the process's group
                os.chown(path, -1, self._gid, follow_symlinks=False)
            sock.listen(socket.SOMAXCONN)  # a burst waits here while MAX_CLIENTS are served
            sock.setblocking(False)
            self._inode = os.lstat(path).st_ino
        except OSError as exc:
            sock.close()
            _unlink(path)
            problem = group_problem(self.group) if isinstance(exc, PermissionError) else None
            if problem:  # the chown was refused because of the group: that is the config's fault
                raise ControlError(problem, config=True) from None
            if self._gid is not None and isinstance(exc, PermissionError):
                raise ControlError(f"cannot give the control socket {path} to group {self.group}: {exc.strerror} "
                                   f"(a system call filter? under systemd use Group={self.group}: {GROUP_HOWTO})",
                                   config=True) from None
            raise ControlError(f"cannot set up control socket {path}: {exc.strerror or exc}") from None
        self._sock = sock

    def _make_directory(self, directory: Path) -> None:
        try:
            if make_dirs(directory, 0o750) and self._gid is not None and os.lstat(directory).st_gid != self._gid:
                os.chown(directory, -1, self._gid, follow_symlinks=False)
        except OSError as exc:
            raise ControlError(f"cannot create control socket directory {directory}: {exc.strerror or exc}") from None

    def _replace_stale(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(f"cannot check control socket {path}: {exc.strerror or exc}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{path} exists and is not a socket; remove it or set control.socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            if _unlink(path):
                log.info("replaced stale control socket %s (left by a daemon that did not stop cleanly)", path)
            return
        except TimeoutError:
            raise ControlError(f"control socket {path} belongs to another daemond that does not answer; "
                               "stop it first or set control.socket") from None
        except OSError as exc:
            raise ControlError(f"cannot check control socket {path}: {exc.strerror or exc}") from None
        else:
            pid = _peer_credentials(probe)[0]
            raise ControlError(f"control socket {path} is in use by another running daemond (pid {pid}); "
                               "stop it first or set control.socket") from None
        finally:
            probe.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)
        self._thread.start()
        log.info("control socket %s", self.path)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Stop accepting, remove the socket, end every client and join every thread. Idempotent."""
        with self._lock:
            already = self._stopping
            self._stopping = True
            self._slot_free.notify_all()
        if already:
            return
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)
        if self._sock is not None:
            self._sock.close()
            if self._still_ours():
                _unlink(self.path)
        # Idle clients are woken now; one running a command may finish and send its reply
        # (streams end at their next item), then it sees _stopping and leaves.
        with self._lock:
            clients = list(self._clients)
            for client in clients:
                if client.running is None:
                    client.interrupt()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for client in clients:
            client.thread.join(max(0.0, deadline - time.monotonic()))
            if client.thread.is_alive():
                log.warning("control client %s still running %s at shutdown", client.who, client.running or "?")
                with self._lock:
                    client.interrupt()
        self._wake_r.close()
        self._wake_w.close()

    def _still_ours(self) -> bool:
        try:
            return os.lstat(self.path).st_ino == self._inode
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        with self._lock:
            clients = len(self._clients)
        return {"socket": str(self.path), "group": self.group, "clients": clients,
                "served": self.served, "refused": self.refused}

    # -- the accepting thread ---------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                with self._lock:
                    self._slot_free.wait_for(lambda: self._stopping or len(self._clients) < MAX_CLIENTS)
                    if self._stopping:
                        return
                events = selector.select()
                if any(key.fileobj is self._wake_r for key, _ in events):
                    return
                lent = 0
                try:
                    conn, _ = self._sock.accept()
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if self._stopping:
                        return
                    try:
                        if exc.errno not in EXHAUSTED:
                            raise
                        conn, lent = self._descriptors.borrow(self._sock)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        log.error("control socket: cannot accept: %s; retrying", exc.strerror or exc,
                                  extra=limited("on the control socket", "failed accepts"))
                        with self._lock:
                            self._slot_free.wait_for(lambda: self._stopping, 0.1)
                        continue
                try:
                    self._admit(conn, lent)
                except Exception:
                    log.exception("control socket: cannot serve a client")
                    conn.close()
                    self._descriptors.give_back(lent)

    def _admit(self, conn: socket.socket, lent: int = 0) -> None:
        pid, uid, gid = _peer_credentials(conn)
        if not self._allowed(conn, pid, uid, gid):
            with self._lock:
                self.refused += 1
            log.warning("control socket: refused uid %d (pid %d): not root, not uid %d%s", uid, pid, os.geteuid(),
                        f", not in group {self.group}" if self.group else "")
            reply = protocol.error(protocol.FORBIDDEN, f"uid {uid} may not control this daemond "
                                   f"(allowed: root, uid {os.geteuid()}{', group ' + self.group if self.group else ''})")
            try:
                conn.send(protocol.encode(reply), socket.MSG_DONTWAIT)
            except OSError:
                pass
            conn.close()
            self._descriptors.give_back(lent)
            return
        conn.settimeout(IDLE_TIMEOUT)
        client = ControlClient(self, conn, f"uid {uid} pid {pid}", next(self._numbers))
        client.lent = lent
        with self._lock:
            self._clients.add(client)
        try:
            client.thread.start()
        except RuntimeError as exc:  # cannot start a new thread
            log.error("control socket: cannot start a thread for %s: %s", client.who, exc)
            self.client_done(client)

    def _allowed(self, conn: socket.socket, pid: int, uid: int, gid: int) -> bool:
        if uid in (0, os.geteuid()):
            return True
        if self._gid is None:
            return False
        return gid == self._gid or self._gid in _peer_groups(conn, pid)

    def client_done(self, client: ControlClient) -> None:
        with self._lock:
            self._clients.discard(client)
            client.close()
            self.served += 1
            self._slot_free.notify_all()
        self._descriptors.give_back(client.lent)


class ControlClient:
    """One connection to the control socket: read requests, run them, write replies."""

    def __init__(self, server: ControlServer, conn: socket.socket, who: str, number: int):
        self.server = server
        self.conn = conn
        self.who = who
        self.running: str | None = None  # the command being run, for the shutdown warning
        self.lent = 0  # spare descriptors borrowed to accept it, given back when it is closed
        self.thread = threading.Thread(target=self.run, name=f"control-client-{number}", daemon=True)

    def run(self) -> None:
        try:
            self.handle()
        except OSError:
            pass  # the client went away, or stop() shut the connection
        except Exception:
            log.exception("control client %s failed", self.who)
        finally:
            self.server.client_done(self)

    def interrupt(self) -> None:
        """Wake the thread out of recv/send (called by stop() under the server's lock)."""
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        """Close the connection (called under the server's lock, so interrupt() never hits a reused fd)."""
        self.conn.close()

    def send(self, message: dict[str, Any]) -> None:
        try:
            line = protocol.encode(message)
        except (ValueError, RecursionError) as exc:  # a result holding NaN, or nested past recursion
            log.error("control client %s: a reply is not JSON (%s); sent an error instead", self.who, exc)
            line = protocol.encode(protocol.error(protocol.INTERNAL, f"the reply could not be sent as JSON: {exc}",
                                                  id=message.get("id")))
        self.conn.sendall(line)

    def handle(self) -> None:
        framer = LineFramer(protocol.MAX_REQUEST)  # an over-long request is answered once and skipped
        while not self.server.stopping:
            try:
                chunk = self.conn.recv(65536)
            except TimeoutError:
                return
            if not chunk:
                return
            framer.feed(chunk)
            while (line := framer.next_bytes()) is not None:
                if isinstance(line, TooLong):
                    self.send(_too_long())
                elif line.strip():
                    self.serve(line.strip())
                if self.server.stopping:
                    return

    def serve(self, line: bytes) -> None:
        """Answer one request line."""
        try:
            request = protocol.parse_request(line)
        except protocol.ProtocolError as exc:
            self.send(protocol.error(exc.code, exc.message))
            return
        name, rid = request["command"], request.get("id")
        self.running = name  # until the reply is sent: stop() lets it finish (the reply to `stop` itself)
        try:
            items = None
            try:
                call = self.server.commands.prepare(name, args=request.get("args"), argv=request.get("argv"),
                                                    confirmed=request.get("confirmed", False))
                result = call.run()
                if isinstance(result, Iterator):
                    items = result
                else:
                    reply = protocol.ok(result, call.text(result) if request.get("text") else None, rid)
            except ArgumentNeeded as exc:
                reply = _argument_needed(self.server.commands, name, exc, rid)
            except Exception as exc:
                reply = _error_reply(exc, name, rid)
                self._count_if_internal(reply, name)
            if items is not None:
                self.stream(items, name, rid)
            else:
                self.send(reply)  # an OSError here (client gone) ends the connection quietly
        finally:
            self.running = None

    def stream(self, items: Iterator, name: str, rid: Any) -> None:
        """Send a streaming result until it ends, the client leaves or the daemon stops."""
        final = protocol.ok(None, id=rid)
        try:
            self.send(protocol.streaming(rid))
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except Exception as exc:
                    final = _error_reply(exc, name, rid)
                    self._count_if_internal(final, name)
                    break
                if self._peer_gone():
                    return
                if self.server.stopping:
                    break
                if item is not None:
                    self.send(protocol.stream(item, rid))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        self.send(final)

    def _count_if_internal(self, reply: dict[str, Any], name: str) -> None:
        if reply["error"]["code"] == protocol.INTERNAL and self.server.on_plugin_error is not None:
            try:
                plugin = self.server.commands.get(name).plugin
            except UsageError:  # unregistered meanwhile (a reload dropped its plugin)
                return
            if plugin is not None:
                self.server.on_plugin_error(plugin)

    def _peer_gone(self) -> bool:
        """True once the client has closed (POLLHUP); a client that only shut down its
        writing side (``socat`` after its input ends) still reads the stream."""
        poller = select.poll()
        poller.register(self.conn, select.POLLHUP | select.POLLERR)
        return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


def _argument_needed(commands: CommandRegistry, name: str, exc: ArgumentNeeded, rid: Any) -> dict[str, Any]:
    argument = commands.get(name).argument(exc.argument)
    details = {"argument": exc.argument, "prompt": exc.prompt, "secret": bool(argument and argument.secret),
               "confirm": exc.confirm}
    return protocol.error(protocol.ARGUMENT_NEEDED, str(exc), details, rid)


def _error_reply(exc: Exception, name: str, rid: Any) -> dict[str, Any]:
    if isinstance(exc, ConfirmationNeeded):
        return protocol.error(protocol.CONFIRM, str(exc), id=rid)
    if isinstance(exc, UsageError):
        return protocol.error(protocol.USAGE, str(exc), exc.details, rid)
    if isinstance(exc, CommandError):
        return protocol.error(protocol.FAILED, str(exc), exc.details, rid)
    log.error("control command %s failed", name, exc_info=exc)
    return protocol.error(protocol.INTERNAL, f"{name} failed: {exc.__class__.__name__}: {exc}", id=rid)


def _too_long() -> dict[str, Any]:
    return protocol.error(protocol.TOO_LONG, f"request line longer than {protocol.MAX_REQUEST} bytes")


def _peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    return _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def _peer_groups(conn: socket.socket, pid: int) -> set[int]:
    """The peer's supplementary groups: SO_PEERGROUPS (as at connect), else /proc/PID/status."""
    try:
        data = conn.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 1024)
        return set(struct.unpack(f"{len(data) // 4}I", data[: len(data) // 4 * 4]))
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    return set()


def _resolve_group(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise ControlError(f"control.group {group!r}: no such group") from None


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
