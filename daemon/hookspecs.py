"""The plugin contract: every hook daemond calls, documented for plugin authors.

A plugin is a module or an object whose functions are marked with
``@daemon.hookimpl`` and named after a hook below. pluggy checks each
implementation against its spec when the plugin is registered: a misspelt
``daemond_…`` name, or an argument the spec does not offer, stops the daemon at
start with the plugin and the hook named. An implementation may accept any
subset of a hook's arguments.

Hooks come in three groups, by the phase of the daemon's life they belong to:

* **Configuration and lifecycle** — called on the main thread (or the reload
  thread) for every loaded plugin.
* **Sessions** — called on a connection's own thread, only for the plugins
  that the connection's listener lists, in the order the listener lists them
  (``plugins: [auth, chat]`` calls ``auth`` first). The thread is the
  connection's alone while it lasts, but once the connection has ended it may
  serve a later one (``tuning.spare_threads``): keep per-connection data in
  ``session.state``, not in ``threading.local``, and leave the thread as you
  found it (its CPU affinity, its signal mask; the daemon sets its name and
  priority, and a fresh ``contextvars`` context, for each connection).
* **Control** — what a plugin adds to ``daemonctl`` and the console.
* **Accounts** — what a login plugin (the built-in ``auth``) offers another
  front end (IRC): checking a password and logging a session in.
* **Chat rooms** — what the ``chat`` plugin offers other plugins (a second
  front end such as IRC).

Exceptions: pluggy stops a hook call at the first implementation that raises.
For session hooks the daemon catches the exception at the session boundary,
logs it with its traceback, counts it against the plugin, and ends that one
connection; every other connection carries on. Raise
:class:`daemon.SessionEnd` to end a connection on purpose, without a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon.markers import hookspec

if TYPE_CHECKING:  # pragma: no cover - typing only
    from daemon.api import DaemonAPI
    from daemon.commands import ControlCommand
    from daemon.session import Session
    from daemon.settings import Schema


# --------------------------------------------------------------------------
# Configuration and lifecycle
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def daemond_settings_schema() -> Schema | None:
    """Declare the settings your plugin accepts under ``plugins.<name>:``.

    **When:** each time a config is validated — at start, by
    ``daemond --check-config`` and before every reload. **Thread:** main or
    reload thread. It is called for one plugin at a time, so you never see
    another plugin's call.

    **Return:** a :class:`daemon.Schema` describing your section. The daemon
    checks the section against it, reports every problem as
    ``FILE:LINE:COL: message``, fills in defaults and hands the result to
    :func:`daemond_configure`. Return ``None`` (or do not implement the hook)
    if your plugin takes no settings; a section for it is then an error.

    **Call mode:** ``firstresult`` — one schema per plugin.

    **If it raises:** the config is reported invalid, naming your plugin.
    """


@hookspec
def daemond_configure(settings: dict[str, Any], daemon: DaemonAPI) -> None:
    """Receive your validated settings.

    **When:** at start, before :func:`daemond_start`, and again after every
    reload that changes your section. **Thread:** main or reload thread. Called
    for one plugin at a time with that plugin's own section (defaults filled
    in; ``{}`` if the plugin has no schema).

    Store what you need; settings that make sense for live sessions (a
    message of the day, a replay count) should take effect at once.

    **Call mode:** plain. **If it raises:** at start the daemon exits 1 naming
    your plugin (raise :class:`daemon.PluginError` for a problem the operator
    must fix: its message is shown without a traceback); at reload the reload is reported failed for your plugin and
    the rest of the new config still applies.
    """


@hookspec(historic=True)
def daemond_start(daemon: DaemonAPI) -> None:
    """The daemon is starting: open files and databases, start helpers.

    **When:** once, after :func:`daemond_configure` and before any listener
    accepts a connection. **Thread:** main.

    **Call mode:** ``historic`` — a plugin that is loaded later (a reload
    names it for the first time) is called as soon as it is registered, with
    the same ``daemon``, so every plugin sees exactly one start.

    ``daemon`` is the :class:`daemon.DaemonAPI`: the state directory, a
    logger, the daemon-wide hooks, the connected sessions.

    **If it raises:** the daemon logs the error and exits 1 naming your plugin
    (at a reload, the plugin is unloaded and the reload reported failed).
    Raise :class:`daemon.PluginError` for a problem the operator must fix
    (a file with the wrong mode): its message is shown without a traceback.
    """


@hookspec
def daemond_stopping(daemon: DaemonAPI) -> None:
    """The daemon is shutting down; sessions are still connected.

    **When:** once, after every listener has stopped accepting and before the
    daemon closes the remaining sessions. **Thread:** main. A good time to say
    goodbye (``NOTICE …``) to your clients.

    **Call mode:** plain. **If it raises:** logged; shutdown carries on.
    """


@hookspec
def daemond_stopped(daemon: DaemonAPI) -> None:
    """Every session has ended: flush and close your files and databases.

    **When:** once, last thing before the process exits. **Thread:** main.

    **Call mode:** plain. **If it raises:** logged; shutdown carries on.
    """


@hookspec
def daemond_requires() -> list[str] | None:
    """Name the plugins yours cannot work without (a front end needs ``auth`` and ``chat``).

    **When:** each time a config is validated — at start, by
    ``daemond --check-config`` and before every reload — for one plugin at a
    time, like :func:`daemond_settings_schema`. **Thread:** main or reload.

    **Return:** plugin names as a config names them (``["auth", "chat"]``).
    A config that loads your plugin but not one of them (in no listener's
    ``plugins:`` and without a ``plugins.<name>:`` section) is invalid, with
    the problem at your plugin's name: ``plugin 'irc' needs the plugin 'chat'
    loaded too …``. ``None`` or ``[]``: nothing.

    **Call mode:** plain. **If it raises:** the config is reported invalid,
    naming your plugin.
    """


@hookspec(firstresult=True)
def daemond_cluster_ready() -> bool | None:
    """Say that your plugin works when the daemon is one node of a cluster (``cluster.redis``
    set, docs/cluster.md): it keeps no state of its own that the other nodes would need, or
    keeps it where they all see it (:attr:`DaemonAPI.cluster`'s Redis).

    **When:** each time a config with ``cluster.redis`` is validated — at start, by
    ``daemond --check-config`` and before every reload — for one plugin at a
    time. **Thread:** main or reload.

    **Return:** ``True``: it works in cluster mode. Anything else (or no
    implementation): a config that sets ``cluster.redis`` and loads your plugin
    is invalid, the problem at your plugin's name: ``plugin 'chat' does not work
    in cluster mode (yet) …`` — a plugin that would keep users or rooms on one
    node only is refused rather than silently half-working. Without
    ``cluster.redis`` it is never called.

    **Call mode:** firstresult. **If it raises:** the config is reported
    invalid, naming your plugin.

    Example (a stateless plugin)::

        @hookimpl
        def daemond_cluster_ready():
            return True
    """


@hookspec
def daemond_cluster_import(daemon: DaemonAPI) -> list[str] | None:
    """Copy what your plugin kept standalone (its files in the state directory) into the
    cluster's Redis, for an operator moving a node into a cluster: ``daemond cluster import``.

    **When:** only from ``daemond cluster import -c CONFIG``, a command run beside the
    daemon (it need not be stopped): the config must set ``cluster.redis``; each plugin is
    configured (``daemond_configure``) but not started, and ``daemon.cluster`` is connected,
    without a heartbeat. **Thread:** the command's main thread.

    Make it idempotent and resumable: copy each record in one step that leaves what the
    cluster already holds as it is, so that running it again (after an interruption, or
    once the node has served in the cluster) copies only what is missing.

    **Return:** lines for the operator saying what was copied and what was already there
    (``None``: nothing of yours to import). **Call mode:** plain. **If it raises:** the
    command reports the failure, naming your plugin, and exits 1; what was copied stays.

    Example::

        @hookimpl
        def daemond_cluster_import(daemon):
            return [f"notes: {copy_notes(daemon.resolve('notes.db'), daemon.cluster)} copied"]
    """


@hookspec(firstresult=True)
def daemond_login_gate() -> bool | None:
    """Say that your plugin puts a login in front of the plugins after it in a listener.

    **When:** each time a listener that lists your plugin is set up: at start,
    and at a reload that changes the listener's plugins. **Thread:** main or
    reload thread. Called only for the plugins the listener lists.

    **Return:** ``True`` if a client must log in through your plugin (with
    ``session.login(user)``) before the rest of the listener sees it; the
    built-in ``auth`` does. The listener then caps the connections not logged
    in yet per address (``max_unauthenticated_per_ip``), frames their input in
    lines, and runs them at ``tuning.login_nice`` until they log in. Return
    ``None`` (or do not implement the hook) otherwise.

    A plugin written before this hook may set a module or class attribute
    ``daemond_login_gate = True`` instead; it still counts, with a
    ``DeprecationWarning``.

    **Call mode:** ``firstresult`` — one plugin saying ``True`` gates the
    listener. **If it raises:** the listener is not set up: the daemon does
    not start (at a reload the listener stays as it was, and the reload is
    reported failed).
    """


# --------------------------------------------------------------------------
# Sessions (one connection each, on its own thread)
# --------------------------------------------------------------------------


@hookspec
def daemond_session_open(session: Session) -> None:
    """A client has connected to a listener that lists your plugin.

    **When:** first thing on the connection's thread, in the order the
    listener lists its plugins. **Thread:** the connection's own; on a
    listener that asks for a login it may run at ``tuning.login_nice`` (nice
    19, where the daemon applies it) until ``session.login()``, and threads
    you start here inherit that. On a TLS listener the handshake is done
    before this hook (``session.tls`` names the version, cipher and any
    verified client certificate; ``None`` on plaintext): reading and writing
    are the same either way, and a client that fails the handshake never
    reaches any hook.

    You may converse here: send a greeting, or run a whole dialogue with
    :meth:`Session.read_line` (the ``auth`` plugin logs the user in here, so
    plugins listed after it only run once a user is known). Blocking is fine:
    the thread belongs to this connection.

    **Call mode:** plain, in list order. **If it raises:** the connection
    ends (``SessionEnd`` quietly, anything else logged with its traceback);
    plugins after yours are not called.
    """


@hookspec
def daemond_session_login(session: Session, user: str) -> None:
    """A user has logged in on this session.

    **When:** called by a login plugin (the built-in ``auth``) through
    ``session.login(user)``, with ``session.user`` already set and *before*
    the login command's final ``+OK``: lines you send here (a greeting, a
    replay) are data lines of that reply. **Thread:** the connection's own,
    already back at the daemon's own priority (until a login it ran at
    ``tuning.login_nice``). Use it to greet the user or to add the session
    to a room.

    **Call mode:** plain, in list order. **If it raises:** the connection
    ends, as for any session hook, and the login plugin sends no ``+OK``. To
    refuse a login, send ``session.err(token, text)`` — the login's one reply —
    and raise :class:`~daemon.SessionEnd` (chat does, for a name that is
    already connected); ``auth`` then takes back what it had recorded of
    that login (its token, the last login). A plugin later in the list may
    refuse a login your hook already saw: your ``daemond_session_close``
    runs then, as for any end of a session.
    """


@hookspec(firstresult=True)
def daemond_line_received(session: Session, line: str) -> bool | None:
    """Handle one line from the client — the line protocol's dispatcher.

    **When:** for every complete line on a listener whose plugins implement
    this hook (such a listener frames its input into lines; see
    ``docs/protocol.md``). **Thread:** the connection's own. ``line`` is
    decoded UTF-8 without its line ending, never longer than the listener's
    ``max_line``; over-long and badly encoded lines were already answered with
    ``-ERR`` and never reach you. An empty line (a bare line ending) does
    reach you, as ``""``. ``daemon.split_command(line)`` tells a
    ``/command`` from text, ``daemon.plain_text(line)`` undoes ``//``.

    **Return:** ``True`` if you handled the line (and sent its reply);
    ``None`` to let the next plugin try. If nobody handles it the daemon
    answers ``/help`` and ``/quit`` itself and ``-ERR unknown-command …``
    otherwise.

    **Call mode:** ``firstresult`` — "who handles this line": the first
    plugin, in list order, to return a result wins. ``wrapper=True``
    implementations may wrap every line for cross-cutting concerns (timing,
    flood control, auditing).

    **If it raises:** the connection ends, logged with the traceback.
    """


@hookspec
def daemond_data_received(session: Session, data: bytes) -> None:
    """Handle raw bytes from the client (listeners without line framing).

    **When:** for each chunk read from a listener none of whose plugins
    implements :func:`daemond_line_received`; chunk boundaries are whatever
    TCP delivered. Bytes a previous plugin read past its last line (e.g. sent
    right behind a login) come first. **Thread:** the connection's own.

    This is the hot path: the daemon resolves the callers once per session,
    and when a single plugin implements the hook it is called directly.
    Send with :meth:`Session.send` to get TCP back-pressure.

    **Call mode:** plain. **If it raises:** the connection ends.
    """


@hookspec
def daemond_session_close(session: Session, reason: str) -> None:
    """The connection is ending.

    **When:** once per session, whatever ended it (client left, idle timeout,
    error, shutdown, kick). **Thread:** the connection's own; the socket may
    already be unusable, so only release your state here (e.g. leave a room,
    tell others ``PART``). ``reason`` is a short word: ``eof``, ``quit``,
    ``timeout``, ``error``, ``shutdown``, ``kicked``, ``overflow``, ….

    **Call mode:** plain, all implementations, even when one raises earlier
    hooks. **If it raises:** logged; the connection closes anyway.
    """


@hookspec(firstresult=True)
def daemond_farewell(reason: str, text: str) -> bytes | None:
    """Say, in your protocol, why the daemon refuses or ends a connection.

    **When:** just before the daemon closes a connection for a reason of its
    own. ``reason`` is one word: ``too-many-connections`` (over a listener's
    ``max_connections`` or ``max_per_ip`` at accept, ``max_unauthenticated_per_ip``
    at accept on a login-gated listener, ``max_logged_in_per_ip`` at
    ``session.login()``), ``kicked`` (``daemonctl kick``) or ``listener-removed``
    (a reload removed the listener). ``text`` is a sentence for people (``too
    many connections not logged in from 192.0.2.7 (20)``; for ``kicked`` the
    operator's reason, or ``""``). **Thread:** the accepting thread, the
    session's own (at login), or the control or reload thread. Called only for
    the plugins the listener lists.

    **Return:** the bytes to send instead of the line protocol's form (an IRC
    front end sends ``ERROR :Closing Link: …``), or ``None`` to leave it to
    the next plugin and, at the end, to the line protocol: ``-ERR
    too-many-connections TEXT``, ``NOTICE kicked by the operator[: TEXT]``,
    ``NOTICE listener NAME was removed by a config reload; closing`` on line
    listeners, nothing on byte listeners. Do not block: the bytes are sent
    without waiting, and what does not fit is dropped.

    **Call mode:** ``firstresult``, in list order. **If it raises:** it is
    logged and the line protocol's form is sent.
    """


@hookspec
def daemond_line_commands(session: Session) -> list[tuple[str, str]] | None:
    """List the ``/commands`` your plugin handles, for ``/help``.

    **When:** a client sends ``/help`` and no plugin handled it itself.
    **Thread:** the connection's own.

    **Return:** ``[("/roll NdM", "roll dice"), …]`` — usage and a one-line
    description each. **Call mode:** plain; results of all plugins are
    listed, in list order. **If it raises:** the connection ends.
    """


# --------------------------------------------------------------------------
# Control (daemonctl and the console)
# --------------------------------------------------------------------------


@hookspec
def daemond_control_commands(daemon: DaemonAPI) -> list[ControlCommand] | None:
    """Add commands to ``daemonctl`` and the daemon's console.

    **When:** at start and after each reload. **Thread:** main or reload.

    **Return:** a list of :class:`daemon.ControlCommand` — name, help text,
    arguments and the function that runs it (on the control thread or the
    console's). A name that is already taken is an error at start. Arguments,
    confirmation questions and streaming results: ``docs/control.md``.

    **Call mode:** plain; every plugin's commands are registered.
    **If it raises:** the daemon exits 1 at start (reported failed at reload).
    """


@hookspec
def daemond_status(daemon: DaemonAPI) -> dict[str, Any] | None:
    """Contribute to ``daemonctl status``.

    **When:** each time status is asked for. **Thread:** the control thread —
    keep it quick and take your own locks.

    **Return:** a small JSON-serialisable dict, shown under your plugin's name.
    **Call mode:** plain. **If it raises:** status shows the error for your
    plugin; the command still succeeds.
    """


# --------------------------------------------------------------------------
# Accounts (what a login plugin offers another front end)
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def daemond_account_login(session: Session, name: str, password: str) -> tuple[str, str] | None:
    """Check a user's name and password for a session and log it in — for a front end
    that is not the line protocol (IRC's ``PASS`` and SASL ``PLAIN``).

    **When:** call it yourself, as
    ``session.daemon.hook.daemond_account_login(session=…, name=…, password=…)``,
    on the session's own thread, while ``session.user`` is ``None``.
    **Thread:** the session's own; it may wait for the password hash (up to the
    login plugin's login timeout, counted from the connection). The built-in
    ``auth`` implements it, with everything its ``/login`` does: ``require_tls``
    (a password over plaintext from another machine is refused unchecked), the
    failed-login throttles per name and per address (shared with the line
    protocol: guesses over either count together), ``max_sessions_per_user``,
    its log lines and counters.

    On success the session is logged in — ``session.login(name)`` is called, so
    ``session.user`` is set and your ``daemond_session_login`` runs (and may
    refuse it by raising :class:`~daemon.SessionEnd`, which comes out of this
    call, as does a listener's ``max_logged_in_per_ip``). Call
    :func:`daemond_account_logout` when such a session ends.

    **Return:** ``None`` when no login plugin is loaded; else ``(token, text)``:
    ``("ok", name)`` with the name as registered, or the line protocol's error
    token and sentence: ``bad-credentials``, ``too-many-attempts``,
    ``tls-required``, ``too-many-sessions``, ``busy``, ``unavailable``,
    ``timeout``. Never the password, in the reply or in the log.

    **Call mode:** ``firstresult``. **If it raises:** the exception reaches the
    caller.
    """


@hookspec(firstresult=True)
def daemond_account_exists(name: str) -> bool | None:
    """Whether ``name`` is a registered user (not case-sensitive) — a front end that lets
    guests in uses it to keep registered names for their owners.

    **When:** call it yourself (``daemon.hook.daemond_account_exists(name=…)``).
    **Thread:** any. **Return:** ``True``/``False``; ``None`` when no login
    plugin is loaded. **Call mode:** ``firstresult``. **If it raises:** the
    exception reaches the caller.
    """


@hookspec
def daemond_account_logout(session: Session) -> None:
    """A session that :func:`daemond_account_login` logged in is ending.

    **When:** call it yourself from your ``daemond_session_close`` (the login
    plugin is not in your listener's plugins, so it is not told otherwise): it
    gives back the session's place in ``max_sessions_per_user``. Calling it for a
    session that never logged in does nothing. **Thread:** the session's own.
    **Call mode:** plain. **If it raises:** the exception reaches the caller.
    """


# --------------------------------------------------------------------------
# Chat rooms (what the chat plugin offers a second front end)
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def daemond_chat_rooms() -> Any:
    """The chat rooms, for a plugin that is another front end to them (IRC).

    **When:** call it yourself, as ``daemon.hook.daemond_chat_rooms()``, from
    :func:`daemond_start` on (the ``chat`` plugin opens its rooms in its own
    start: a plugin listed after it in ``plugins:`` order, or any session
    hook, finds them open). **Thread:** any. The built-in ``chat`` plugin
    implements it; there is no reason for another plugin to.

    **Return:** the rooms object, or ``None`` when ``chat`` is not loaded.
    Room names are ``#`` and 1-32 of ``A-Za-z0-9_.-``, not case-sensitive.
    Every method raises ``RoomError`` (``.token``, ``.text``: the protocol's
    error token — ``bad-room``, ``no-such-room``, ``not-in-room``,
    ``room-limit``, ``bad-text``, ``already-connected``, ``unavailable`` —
    and a sentence); a session is one that has logged in (``session.user``):

    * ``join(session, room, on_event) -> list[event]`` — join (the room is
      made if new and ``rooms.create`` allows); returns the last ``replay``
      messages, oldest first (``[]`` if already in). From then on every
      event of the room except the session's own messages is passed to
      ``on_event(event)``, in the room's one order, with no gap after the
      replay. The callback runs on the thread of whoever caused the event
      (in cluster mode: the node's relay thread, which reads the room's
      stream), with the room's lock held: format the event and ``session.write()`` it
      — never block, never call the rooms object from it. If it raises, your
      session is closed. ``join(session, room, on_event, render=f, write=w)``
      is the fast path for a front end with many sessions: a message, action,
      join, part or topic is rendered once per event by ``f(event) -> bytes``
      (one function shared by all of the front end's sessions that render
      alike) and passed to each member's ``w(bytes)`` (default:
      ``session.write``) instead of ``on_event``, which still gets the rest
      (``deleted``). ``replace=True``: another session of the same name
      already in the room is taken out of it (a front end that lets one
      login replace another); without it that raises ``already-connected``.
    * ``get(room) -> room`` (``.name`` as created; ``no-such-room``) and
      ``joined_room(session, room) -> room`` (``not-in-room`` unless the
      session is in it) — look a room up before acting on it.
    * ``part(session, room)``; ``part_all(session)`` — call it from your
      ``daemond_session_close``: nobody else takes your sessions out.
      Both take ``announce=False`` (no ``PART`` to the others: the daemon
      is stopping).
    * ``say(session, room, text)``, ``act(session, room, text)`` — a message
      or action (``/me``) to a room the session is in; returns its number in
      the room's history. Committed before anyone receives it.
    * ``topic(room, text=None, session=None) -> str`` — read it, or set it
      (the session must be in the room) and tell its members.
    * ``topic_setter(room) -> (name, time)`` — who set the topic and when
      (``*`` and the daemon's start for a topic from before it);
      ``motd()`` — chat's message of the day; ``sanitize(text)`` — text as
      chat stores and sends it.
    * ``history(room, count) -> list[event]``, ``members(room) -> list[str]``,
      ``list() -> [info]`` (``info.name``, ``.members``, ``.messages``,
      ``.topic``), ``joined(session)`` (the rooms, with ``.name``).

    Users — one connected session per name, whichever front end it came
    through, so that duplicate logins and ``/msg`` work across front ends:

    * ``connect(session, on_event, replace=None) -> old`` — make the
      (logged-in) session its name's connected user. A name connected already
      raises ``already-connected`` when ``replace`` is false (``None``: as
      chat's ``on_duplicate_login`` says, ``reject`` or ``replace``; a guest
      front end passes ``False``); when true the old session's handle is
      returned: call
      ``replaced(old, by=session)``, which tells it (chat's
      ``NOTICE replaced: …`` line, or a ``replaced`` event) and closes it.
      ``on_event`` receives the session's private messages.
    * ``disconnect(session, announce=True)`` — call it from your
      ``daemond_session_close``: out of every room (``announce=False``:
      without ``PART``s, when the daemon is stopping), and no longer
      connected. ``user_session(name) -> session | None``: the connected
      session of that name, on any front end (of this node: in cluster mode a
      user on another node has none here; ``user(name)`` finds them).
    * ``tell(session, name, text, action=False)`` — a private message to a
      connected user of any front end (a line client gets ``PRIV``);
      ``no-such-user``, ``bad-text``.
    * ``user(name) -> info | None`` (``info.name`` as spelled, ``.rooms``,
      ``.since``), ``users() -> list[str]``.
    * ``pace(session)`` — chat's flood control (``rate``, ``burst``,
      ``on_flood``) for one line of the session's: returns at once, waits
      (``slow``), or raises ``RoomError`` ``flood`` (``cut``: say so and end
      the session).

    An event has ``kind`` (``msg``, ``action``, ``join``, ``part``,
    ``topic``, ``deleted``: the operator deleted the room, you are out of
    it; and, with ``room`` ``""``, ``private``, ``private_action`` and
    ``replaced``), ``room`` (the name as created), ``name`` (who; ``None`` for
    ``deleted``; ``*`` for the operator's topic), ``text``, ``time`` (epoch
    seconds) and ``seq`` (a message's number in the room's history).

    **Call mode:** ``firstresult``. **If it raises:** the exception reaches
    the caller (a session hook's exception ends that session).
    """
