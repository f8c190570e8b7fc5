"""daemon/changes.py: a reload's diff is derived from the settings' declarations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from daemon.changes import compare
from daemon.config import TUNING_SCHEMA, Config, ControlSettings, LoggingSettings, TuningSettings


def config(**sections) -> Config:
    return Config(path=Path("/etc/daemond.yaml"), state_dir=Path("/var/lib/daemond"), listeners={},
                  plugin_settings={}, control_socket=Path("/run/daemond/control.sock"), **sections)


def test_nothing_changed_is_no_change():
    diff = compare(config(), config())
    assert diff.refused == [] and diff.sections == {}


def test_reloadable_keys_are_listed_by_section_with_old_and_new_values():
    diff = compare(config(), config(logging=LoggingSettings(level="debug"),
                                    tuning=TuningSettings(spare_threads=4, login_nice=None)))
    assert diff.refused == []
    assert diff.sections == {"logging": {"level": ("info", "debug")},
                             "tuning": {"spare_threads": (32, 4), "login_nice": (19, None)}}
    assert diff.changed("tuning", "login_nice") and not diff.changed("tuning", "cpu")
    assert diff.describe("tuning") == "tuning settings changed: spare_threads 4, login_nice None"


def test_restart_only_keys_are_refused_and_kept_as_they_run():
    restart_only = [key for key, setting in TUNING_SCHEMA.fields.items() if setting.restart]
    assert restart_only == ["pin_threads", "cpu"]  # declared so in daemon/config.py
    new = config(tuning=TuningSettings(pin_threads=False, spare_threads=1),
                 control=ControlSettings(group="wheel"))
    new = replace(new, state_dir=Path("/elsewhere"), control_socket=Path("/elsewhere/control.sock"))
    diff = compare(config(), new)
    assert diff.refused == [
        "state_dir changed (/var/lib/daemond → /elsewhere): needs a restart; kept the old one",
        "control.group changed (None → wheel): needs a restart; kept the old one",
        "tuning.pin_threads changed (True → False): needs a restart; kept the old one",
    ]
    kept = diff.config
    assert kept.tuning.pin_threads is True and kept.tuning.spare_threads == 1  # the rest still applies
    assert kept.control.group is None and kept.state_dir == Path("/var/lib/daemond")
    assert kept.control_socket == Path("/run/daemond/control.sock")
    assert diff.sections == {"tuning": {"spare_threads": (32, 1)}}


def test_a_running_listeners_restart_only_settings_are_kept_a_new_listener_takes_them():
    from daemon.config import ListenerConfig

    def listener(name, **values):
        return ListenerConfig(name=name, port=9000, plugins=("echo",), **values)

    old = replace(config(), listeners={"e": listener("e")})
    new = replace(config(), listeners={"e": listener("e", reuse_port=True, max_line=100),
                                       "f": listener("f", reuse_port=True)})
    diff = compare(old, new)
    assert diff.refused == ["listeners.e.reuse_port changed (False → True): needs a restart; kept the old one"]
    kept = diff.config.listeners
    assert kept["e"].reuse_port is False and kept["e"].max_line == 100  # the rest still applies
    assert kept["f"].reuse_port is True


def test_every_cluster_setting_needs_a_restart():
    from daemon.config import CLUSTER_SCHEMA, ClusterSettings

    assert all(setting.restart for setting in CLUSTER_SCHEMA.fields.values())
    diff = compare(config(), config(cluster=ClusterSettings(redis="redis://127.0.0.1:6379/0", node="a")))
    assert diff.refused == [
        "cluster.redis changed (None → redis://127.0.0.1:6379/0): needs a restart; kept the old one",
        "cluster.node changed (None → a): needs a restart; kept the old one",
    ]
    assert diff.config.cluster == ClusterSettings() and diff.sections == {}


def test_a_redis_password_never_shows_in_a_reload_refusal():
    from daemon.config import ClusterSettings

    old = config(cluster=ClusterSettings(redis="redis://:old-secret@127.0.0.1:6379/0"))
    new = config(cluster=ClusterSettings(redis="redis://127.0.0.1:6379/0?password=new-secret"))
    refused = " ".join(compare(old, new).refused)
    assert "secret" not in refused, refused
    assert "redis://:****@127.0.0.1:6379/0 → redis://127.0.0.1:6379/0?password=****" in refused
