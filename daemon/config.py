"""The daemon's config: where it is found, what it may say, and its validation.

``load_config`` reads one YAML file and checks all of it — the core's keys,
every listener, and each plugin's own section through the plugin's schema —
reporting every problem as ``FILE:LINE:COL: message``, not just the first.

Each core setting is declared once, as a :class:`Setting` in a section's
schema below: its type, bounds, default, help and whether a change needs a
restart. The objects a running daemon reads (:class:`ListenerConfig` and one
settings class per section) are made from those declarations, and so is the
reload's diff (:mod:`daemon.changes`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field, make_dataclass, replace
from pathlib import Path
from typing import Any

from daemon import paths, yamlsource
from daemon.addresses import url_without_password
from daemon.paths import SEARCH_PATH
from daemon.settings import Field, Schema
from daemon.yamlsource import Mark, Problem, ProblemList

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: the largest config file read (the shipped one, every key commented, is about 10 KiB)
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Setting(Field):
    """A core setting: a :class:`~daemon.settings.Field` that also says whether the running
    daemon can take a new value at a reload (``restart=True``: it keeps the old one and the
    reload reports that a restart is needed)."""

    restart: bool = False
    #: how a value is shown in reload messages and logs (a URL's password masked); None: as is
    shown: Any = None


def _check_host(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _client_cert_needs_ca(values: dict[str, Any]) -> list[tuple[str, str]]:
    if values.get("client_cert") != "none" and not values.get("client_ca"):
        return [("client_ca", f"is needed to verify client certificates (client_cert: {values.get('client_cert')})")]
    return []


#: ``listeners.NAME.tls``: the listener speaks TLS (docs/tls.md). Paths follow the config's rule.
TLS_SCHEMA = Schema(
    {
        "cert": Setting(str, check=_check_host, help="PEM certificate chain (the server's certificate first)"),
        "key": Setting(str, check=_check_host, help="PEM private key; must not be readable by others"),
        "handshake_timeout": Setting(float, default=10.0, min=0.1, max=600,
                                     help="seconds a client has to finish the handshake, else it is closed"),
        "min_version": Setting(str, default="TLSv1.2", choices=("TLSv1.2", "TLSv1.3")),
        "client_ca": Setting(str, default=None, nullable=True, help="CA bundle to verify client certificates against"),
        "client_cert": Setting(str, default="none", choices=("none", "optional", "required"), normalize=str.lower),
    },
    check=_client_cert_needs_ca,
)

LISTENER_SCHEMA = Schema(
    {
        "host": Setting(str, default="127.0.0.1", check=_check_host, help="address to bind; '::' or '0.0.0.0' for all"),
        "port": Setting(int, min=0, max=65535, help="TCP port; 0 picks a free one (tests)"),
        "plugins": Setting(list, items=str, min=1, help="plugins serving this listener, in order"),
        "max_connections": Setting(int, default=1000, min=1, max=1_000_000),
        "max_per_ip": Setting(int, default=None, nullable=True, min=1),
        "max_unauthenticated_per_ip": Setting(int, default=20, nullable=True, min=1,
                                              help="connections not yet logged in from one address (login-gated listeners); null: no limit"),
        "max_logged_in_per_ip": Setting(int, default=50, nullable=True, min=1,
                                        help="sessions logged in from one address (login-gated listeners); a login "
                                             "over it gets -ERR too-many-connections and is closed; null: no limit"),
        "idle_timeout": Setting(float, default=300.0, min=0, help="seconds without input before a session is closed; 0 = never"),
        "max_line": Setting(int, default=4096, min=16, max=16 * 1024 * 1024),
        "send_queue": Setting(int, default=1024 * 1024, min=4096, help="bytes queued for a slow reader before it is cut"),
        "keepalive": Setting(bool, default=True),
        "backlog": Setting(int, default=4096, min=1, max=65535, help="capped by net.core.somaxconn"),
        "tls": Setting(dict, default=None, nullable=True, schema=TLS_SCHEMA,
                       help="TLS on this listener (docs/tls.md); null: plaintext"),
        "reuse_port": Setting(bool, default=False, restart=True,
                              help="SO_REUSEPORT: several daemond processes (cluster nodes on one host, "
                                   "docs/cluster.md) listen on the same address, the kernel spreading new "
                                   "connections over them; every one of them must set it"),
    }
)

LOGGING_SCHEMA = Schema(
    {
        "file": Setting(str, default="daemond.log", nullable=True, help="relative to the state directory; null: no file"),
        "level": Setting(str, default="info", choices=LOG_LEVELS, normalize=str.lower, help="any case, as Python's logging"),
        "buffer": Setting(int, default=1000, min=0, max=1_000_000, help="lines kept in memory for `daemonctl logs`"),
        "max_size": Setting(int, default=100 * 1024 * 1024, nullable=True, min=64 * 1024,
                            help="bytes; past it the file becomes <file>.1 and a new one is begun; null: no cap"),
    }
)

CONTROL_SCHEMA = Schema(
    {
        "socket": Setting(str, default=None, nullable=True, restart=True),
        "group": Setting(str, default=None, nullable=True, restart=True),
    }
)

RELOAD_SCHEMA = Schema(
    {
        "watch": Setting(bool, default=True),
        "debounce": Setting(float, default=0.25, min=0, max=10),
    }
)

TUNING_SCHEMA = Schema(
    {
        "switch_interval": Setting(float, default=0.05, min=0.0001, max=10.0,
                                   help="CPython's GIL switch interval (sys.setswitchinterval), seconds"),
        "thread_stack_size": Setting(int, default=512 * 1024, min=256 * 1024, max=64 * 1024 * 1024,
                                     help="stack size of connection threads, bytes"),
        "spare_threads": Setting(int, default=32, min=0, max=100000,
                                 help="threads kept, once their connection ends, for the next connections; "
                                      "0: a new thread for every connection"),
        "spare_thread_timeout": Setting(float, default=60.0, min=0.01, max=86400.0,
                                        help="seconds a kept thread waits for a connection before it ends"),
        "malloc_mmap_threshold": Setting(int, default=128 * 1024, nullable=True, min=4096, max=32 * 1024 * 1024,
                                         help="glibc: allocations this big or bigger are mmap'd and returned on free; "
                                              "null: glibc's sliding default"),
        "pin_threads": Setting(bool, default=True, restart=True,
                               help="keep the threads that run Python (listeners, connections) on one CPU"),
        "cpu": Setting(int, default=None, nullable=True, min=0, max=4095, restart=True,
                       help="that CPU; null: the last one the process may use"),
        "login_nice": Setting(int, default=19, nullable=True, min=-20, max=19,
                              help="nice value of the threads serving connections not logged in yet "
                                   "(login-gated listeners); null: the daemon's own"),
    }
)

def _check_redis_url(value: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - parses the port, raising ValueError for a bad one
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if url.scheme not in REDIS_SCHEMES:
        return "must be a redis:// (or rediss://, unix://) URL, e.g. redis://127.0.0.1:6379/0"
    if url.scheme != "unix" and not url.hostname:
        return "needs a host: redis://HOST:PORT/DB"
    return None


def _check_node_name(value: str) -> str | None:
    if not value or len(value) > 64 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in value):
        return "must be 1 to 64 letters, digits, '.', '_' or '-'"
    return None


def _check_prefix(value: str) -> str | None:
    if len(value) > 64 or not value.isprintable() or " " in value:
        return "must be at most 64 printable characters without spaces"
    return None


REDIS_SCHEMES = ("redis", "rediss", "unix")

#: ``cluster:``: this daemon as one node of several sharing users through Redis (docs/cluster.md).
CLUSTER_SCHEMA = Schema(
    {
        "redis": Setting(str, default=None, nullable=True, restart=True, check=_check_redis_url,
                         shown=url_without_password,
                         help="the Redis the nodes share (redis://HOST:PORT/DB); null: standalone, no Redis"),
        "node": Setting(str, default=None, nullable=True, restart=True, check=_check_node_name,
                        help="this node's name, unique in the cluster; null: HOSTNAME-PID"),
        "prefix": Setting(str, default="daemond:", restart=True, check=_check_prefix,
                          help="prefix of every Redis key, so that clusters can share a Redis"),
        "node_timeout": Setting(float, default=10.0, min=1.0, max=3600.0, restart=True,
                                help="seconds without a heartbeat before a node counts as dead"),
    }
)

TOP_SCHEMA = Schema(
    {
        "state_dir": Setting(str, default=None, nullable=True, restart=True),
        "plugins_from_working_dir": Setting(bool, default=False,
                                            help="import dotted-path plugins from the directory daemond started in"),
        "listeners": Setting(dict),
        "plugins": Setting(dict, default=None, nullable=True),
        "logging": Setting(dict, default=None, nullable=True),
        "control": Setting(dict, default=None, nullable=True),
        "reload": Setting(dict, default=None, nullable=True),
        "tuning": Setting(dict, default=None, nullable=True),
        "cluster": Setting(dict, default=None, nullable=True),
    }
)

#: The core's sections of plain settings, by their key in the config file.
SECTIONS = {"logging": LOGGING_SCHEMA, "control": CONTROL_SCHEMA, "reload": RELOAD_SCHEMA, "tuning": TUNING_SCHEMA,
            "cluster": CLUSTER_SCHEMA}

def settings_class(name: str, schema: Schema, first: tuple[tuple[str, type], ...] = (),
                   namespace: dict[str, Any] | None = None) -> type:
    """A frozen dataclass with one attribute per key of ``schema``, defaulting to the declared
    default, after the ``first`` (name, type) attributes, which have none."""
    fields: list[Any] = list(first)
    fields += [(key, Any) if setting.required else (key, Any, field(default=setting.default))
               for key, setting in schema.fields.items()]
    cls = make_dataclass(name, fields, frozen=True, kw_only=True, namespace=namespace)
    cls.__module__ = __name__
    return cls


#: One listener's settings (``listeners.NAME``), with ``name``; ``plugins`` is a tuple.
ListenerConfig = settings_class("ListenerConfig", LISTENER_SCHEMA, (("name", str),),
                                {"address": property(lambda self: (self.host, self.port))})
#: A listener's ``tls:`` section, its paths resolved (``ListenerConfig.tls``, or None: plaintext).
TlsSettings = settings_class("TlsSettings", TLS_SCHEMA)
LoggingSettings = settings_class("LoggingSettings", LOGGING_SCHEMA)
ControlSettings = settings_class("ControlSettings", CONTROL_SCHEMA)
ReloadSettings = settings_class("ReloadSettings", RELOAD_SCHEMA)
TuningSettings = settings_class("TuningSettings", TUNING_SCHEMA)
ClusterSettings = settings_class("ClusterSettings", CLUSTER_SCHEMA)
_SECTION_CLASSES = {"logging": LoggingSettings, "control": ControlSettings, "reload": ReloadSettings,
                    "tuning": TuningSettings, "cluster": ClusterSettings}


@dataclass
class Config:
    """A validated config: the sections as settings objects, and what is derived from them."""

    path: Path
    state_dir: Path
    listeners: dict[str, Any]  # name -> ListenerConfig
    plugin_settings: dict[str, dict[str, Any]]
    logging: Any = field(default_factory=LoggingSettings)
    control: Any = field(default_factory=ControlSettings)
    reload: Any = field(default_factory=ReloadSettings)
    tuning: Any = field(default_factory=TuningSettings)
    cluster: Any = field(default_factory=ClusterSettings)
    #: ``logging.file`` and ``control.socket`` resolved to where they are (None: no log file)
    log_file: Path | None = None
    control_socket: Path | None = None
    #: sha256 of the file's bytes, as :func:`file_digest` computes it
    digest: str = ""
    #: plugin name -> the LoadedPlugin, for every plugin a listener or ``plugins:`` names
    plugins: dict[str, Any] = field(default_factory=dict)

    def resolve(self, path: str | os.PathLike) -> Path:
        """A path from the config: relative ones stand in the state directory."""
        p = Path(os.path.expanduser(str(path)))
        return p if p.is_absolute() else self.state_dir / p


def file_digest(path: str | os.PathLike) -> str | None:
    """sha256 of a config file's bytes; None if it cannot be read (gone mid-rename, unreadable)."""
    digest = hashlib.sha256()
    try:
        with _open_regular(path) as f:
            while chunk := f.read(64 * 1024):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _open_regular(path: str | os.PathLike):
    """Open a config file for reading; OSError if it is not a regular file (a FIFO would
    block its reader, a device never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def find_config(explicit: str | None = None, environ=os.environ) -> Path:
    """The config to use: ``-c``, else ``$DAEMOND_CONFIG``, else the search path."""
    found = paths.search_config(explicit, environ)
    if found is not None:
        return Path(found)
    tried = ", ".join(SEARCH_PATH)
    raise ConfigError([Problem(None, f"daemond: no config file found (tried $DAEMOND_CONFIG, {tried}); use -c FILE")])


def load_config(path: str | os.PathLike, loader, environ=os.environ) -> Config:
    """Read and validate the config at ``path``; raise ConfigError listing every problem.

    ``loader`` is the :class:`daemon.loader.PluginLoader` that finds the
    plugins the config names and asks each for its settings schema. Whatever
    the file holds, ConfigError is the only exception: a file over
    :data:`MAX_CONFIG_BYTES` is refused unread, and a failure nobody foresaw
    while checking it becomes one problem naming the exception.
    """
    path = Path(path)
    shown = str(path)
    try:
        with _open_regular(path) as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError([Problem(None, f"{shown}: config file is larger than {MAX_CONFIG_BYTES:,} bytes "
                                             "(the limit); is it the right file?")])
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(None, f"{shown}: config file not found")]) from None
    except PermissionError:
        raise ConfigError([Problem(None, f"{shown}: cannot read config file: permission denied")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(None, f"{shown}: cannot read config file: {getattr(exc, 'strerror', None) or exc}")]) from None
    try:
        config = parse_config(text, path, loader, environ)
    except ConfigError:
        raise
    except Exception as exc:  # a RecursionError, MemoryError or bug: the config is refused, with the reason
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError([Problem(None, f"{shown}: cannot check this config ({reason})")]) from None
    config.digest = hashlib.sha256(raw).hexdigest()  # of the bytes, as file_digest() hashes them
    return config


def parse_config(text: str, path: Path, loader, environ=os.environ) -> Config:
    shown = str(path)
    try:
        doc, doc_mark = yamlsource.load(text, shown)
    except ProblemList as exc:
        raise ConfigError(exc.problems) from None
    if doc is None:
        raise ConfigError([Problem(Mark(shown, 1, 1), "config is empty (it needs at least 'listeners:')")])
    top, problems = TOP_SCHEMA.validate(doc, doc_mark, "")
    if not isinstance(doc, dict):
        raise ConfigError(problems)

    def marks_of(key):
        return doc.value_marks.get(key, doc_mark) if hasattr(doc, "value_marks") else doc_mark

    sections = {}
    for key, schema in SECTIONS.items():
        raw = top.get(key) if isinstance(top.get(key), dict) else None
        sections[key], found = schema.validate(raw, marks_of(key), key)
        problems.extend(found)

    listeners: dict[str, ListenerConfig] = {}
    tls_marks: dict[str, Any] = {}  # listener name -> the tls section (for its marks)
    named_plugins: dict[str, Mark] = {}
    raw_listeners = top.get("listeners")
    if isinstance(raw_listeners, dict):
        if not raw_listeners:
            problems.append(Problem(marks_of("listeners"), "listeners: at least one listener is needed"))
        for name, raw in raw_listeners.items():
            mark = raw_listeners.value_marks.get(name) if hasattr(raw_listeners, "value_marks") else marks_of("listeners")
            values, found = LISTENER_SCHEMA.validate(raw, mark, f"listeners.{name}")
            problems.extend(found)
            plugin_list = values.get("plugins")
            if isinstance(plugin_list, list) and all(isinstance(p, str) for p in plugin_list):
                # checked even when other keys are wrong, so every problem shows at once
                plugin_marks = getattr(plugin_list, "item_marks", [mark] * len(plugin_list))
                seen = set()
                for plugin, pmark in zip(plugin_list, plugin_marks):
                    if plugin in seen:
                        problems.append(Problem(pmark, f"listeners.{name}.plugins: {plugin!r} is listed twice"))
                    seen.add(plugin)
                    named_plugins.setdefault(plugin, pmark)
            if not found:
                listeners[name] = ListenerConfig(name=str(name), **{**values, "plugins": tuple(plugin_list)})
                tls_marks[name] = raw.get("tls") if isinstance(raw, dict) else None
        problems.extend(_address_clashes(listeners, raw_listeners))

    plugin_sections = top.get("plugins") or {}
    for plugin in plugin_sections if isinstance(plugin_sections, dict) else ():
        key_marks = getattr(plugin_sections, "key_marks", {})
        named_plugins.setdefault(plugin, key_marks.get(plugin, marks_of("plugins")))

    loaded: dict[str, Any] = {}
    plugin_settings: dict[str, dict[str, Any]] = {}
    for plugin, pmark in named_plugins.items():
        try:
            loaded[plugin] = loader.load(plugin, from_working_dir=top.get("plugins_from_working_dir") is True)
        except Exception as exc:  # PluginLoadError, or anything a broken plugin raises on import
            # a section for a plugin that cannot load is a typo or a missing install, even if no listener uses it
            problems.append(Problem(pmark, f"plugin {plugin!r}: {_with_known(exc, loader)}"))
            continue
        raw = plugin_sections.get(plugin) if isinstance(plugin_sections, dict) else None
        smark = plugin_sections.value_marks.get(plugin, pmark) if hasattr(plugin_sections, "value_marks") else pmark
        try:
            schema = loaded[plugin].settings_schema()
        except Exception as exc:
            problems.append(Problem(smark, f"plugin {plugin!r}: settings schema failed: {exc!r}"))
            continue
        if schema is None:
            if raw:
                problems.append(Problem(smark, f"plugins.{plugin}: this plugin takes no settings"))
            plugin_settings[plugin] = {}
            continue
        plugin_settings[plugin], found = schema.validate(raw, smark, f"plugins.{plugin}")
        problems.extend(found)

    for plugin, pmark in named_plugins.items():
        if plugin in loaded:
            problems.extend(_requirements(plugin, loaded[plugin], named_plugins, pmark))
    if sections["cluster"].get("redis") is not None:
        cluster_mark = (getattr(doc.get("cluster"), "value_marks", {}).get("redis") if isinstance(doc.get("cluster"), dict)
                        else None) or marks_of("cluster")
        problems.extend(_cluster_problems(loaded, named_plugins, cluster_mark))

    if problems:
        problems.sort(key=lambda p: (p.mark.line, p.mark.column) if p.mark else (0, 0))
        raise ConfigError(problems)

    state_dir = Path(paths.state_dir(top.get("state_dir"), str(path), environ))

    for name, lc in list(listeners.items()):
        if lc.tls is not None:
            listeners[name], found = _with_tls(lc, state_dir, tls_marks.get(name), shown)
            problems.extend(found)
    if problems:
        raise ConfigError(problems)

    logging_cfg = sections["logging"]
    if logging_cfg["file"]:
        log_path = Path(os.path.expanduser(logging_cfg["file"]))
        if not log_path.is_absolute():
            base = Path(environ["LOGS_DIRECTORY"].split(":")[0]) if environ.get("LOGS_DIRECTORY") else state_dir
            log_path = base / log_path
    else:
        log_path = None

    control_cfg = sections["control"]
    socket_path = Path(paths.control_socket(control_cfg["socket"], str(state_dir), environ))

    return Config(
        path=path.absolute(),
        state_dir=state_dir,
        listeners=listeners,
        plugin_settings=plugin_settings,
        **{key: _SECTION_CLASSES[key](**values) for key, values in sections.items()},
        log_file=log_path,
        control_socket=socket_path,
        plugins=loaded,
    )


def _with_tls(lc, state_dir: Path, section, shown: str):
    """``lc`` with its ``tls`` as TlsSettings, paths resolved, and the problems of its files."""
    from daemon.tls import check_files  # ssl is imported only by configs that use TLS

    def resolve(value):
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else state_dir / p)

    values = dict(lc.tls)
    for key in ("cert", "key", "client_ca"):
        if values[key] is not None:
            values[key] = resolve(values[key])
    value_marks = getattr(section, "value_marks", {})
    section_mark = getattr(section, "mark", None) or Mark(shown, 1, 1)
    problems = [Problem(value_marks.get(key, section_mark), f"listeners.{lc.name}.tls.{key}: {message}")
                for key, message in check_files(values["cert"], values["key"], values["client_ca"])]
    return replace(lc, tls=TlsSettings(**values)), problems


def _requirements(plugin: str, loaded, named: dict[str, Mark], mark: Mark) -> list[Problem]:
    """A problem for each plugin that ``plugin`` needs (``daemond_requires``) and the config does not load."""
    try:
        needed = loaded.requires()
    except Exception as exc:
        return [Problem(mark, f"plugin {plugin!r}: daemond_requires failed: {exc!r}")]
    return [Problem(mark, f"plugin {plugin!r} needs the plugin {other!r} loaded too: list it in a listener's "
                          f"plugins: or give it a plugins.{other}: section") for other in needed if other not in named]


def _cluster_problems(loaded: dict[str, Any], named: dict[str, Mark], mark: Mark) -> list[Problem]:
    """What stops this config from running as a cluster node: the Redis client not installed
    (found without importing it), or a plugin that does not say it works in cluster mode."""
    import importlib.util

    problems = []
    try:
        installed = importlib.util.find_spec("redis") is not None
    except ImportError:  # a finder refused it: not usable
        installed = False
    if not installed:
        problems.append(Problem(mark, "cluster.redis is set but the Redis client (redis-py) is not installed: "
                                      "pip install 'daemond[cluster]'"))
    for plugin, pmark in named.items():
        if plugin not in loaded:
            continue
        try:
            ready = loaded[plugin].cluster_ready()
        except Exception as exc:
            problems.append(Problem(pmark, f"plugin {plugin!r}: daemond_cluster_ready failed: {exc!r}"))
            continue
        if not ready:
            problems.append(Problem(pmark, f"plugin {plugin!r} does not work in cluster mode (yet): a config with "
                                           "cluster.redis cannot load it (docs/cluster.md says what is clustered)"))
    return problems


def _with_known(exc: Exception, loader) -> str:
    """The load error, naming the plugins that are installed if it does not already."""
    message = str(exc)
    if "known:" in message:
        return message
    return f"{message} (known: {', '.join(loader.available()) or 'none installed'})"


def _address_clashes(listeners: dict[str, ListenerConfig], raw) -> list[Problem]:
    problems = []
    seen: dict[tuple[str, int], str] = {}
    for name, lc in listeners.items():
        if lc.port == 0:
            continue
        if lc.address in seen:
            mark = raw.value_marks.get(name) if hasattr(raw, "value_marks") else None
            problems.append(Problem(mark, f"listeners.{name}: {lc.host}:{lc.port} is already used by listener {seen[lc.address]!r}"))
        else:
            seen[lc.address] = name
    return problems
