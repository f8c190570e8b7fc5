"""The ``cluster:`` section (docs/cluster.md): checked at --check-config, refused clearly when
it cannot work — the Redis client missing, a plugin not clustered yet, a bad URL or name."""

from __future__ import annotations

import os
import subprocess
import sys

from daemon.testing import write_config

ECHO = {"e": {"plugins": ["echo"]}}
REDIS = {"redis": "redis://127.0.0.1:6379/0"}


def problems(result) -> list[str]:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    return result.stderr.splitlines()


def test_a_cluster_config_with_only_clustered_plugins_is_ok(daemond_check_config):
    result = daemond_check_config(ECHO, cluster={**REDIS, "node": "a", "prefix": "t1:", "node_timeout": 5})
    assert result.returncode == 0, result.stderr


def test_the_defaults_are_standalone(daemond_check_config):
    assert daemond_check_config(ECHO, cluster=None).returncode == 0
    assert daemond_check_config(ECHO, cluster={}).returncode == 0


def test_hook_daemond_cluster_ready(daemond_check_config):
    # the built-ins say True; a plugin that never heard of clusters says nothing
    lines = problems(daemond_check_config({"chat": {"plugins": ["auth", "chat"]}, "irc": {"plugins": ["irc"]}, **ECHO,
                                           "s": {"plugins": ["tests.plugins.shout"]}}, cluster=REDIS))
    assert len(lines) == 2 and lines[1] == "daemond: config has 1 problem(s)", lines
    assert lines[0].endswith("plugin 'tests.plugins.shout' does not work in cluster mode (yet): a config with "
                             "cluster.redis cannot load it (docs/cluster.md says what is clustered)"), lines
    # standalone, the same listener is fine
    assert daemond_check_config({"s": {"plugins": ["tests.plugins.shout"]}}).returncode == 0


def test_bad_values_are_refused_with_the_key(daemond_check_config):
    lines = problems(daemond_check_config(ECHO, cluster={"redis": "http://x", "node": "a b", "node_timeout": 0}))
    text = "\n".join(lines)
    assert "cluster.redis: must be a redis:// (or rediss://, unix://) URL, e.g. redis://127.0.0.1:6379/0" in text
    assert "cluster.node: must be 1 to 64 letters, digits, '.', '_' or '-'" in text
    assert "cluster.node_timeout: " in text


def test_check_config_says_when_the_redis_client_is_not_installed(tmp_path):
    # a sitecustomize that makes "redis" unimportable, as in an install without the cluster extra
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoRedis:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'redis' or name.startswith('redis.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'redis'\", name=name)\n"
        "sys.meta_path.insert(0, _NoRedis())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), *(p for p in sys.path if p)])}

    def check(**top):
        path = write_config(tmp_path / f"c{len(top)}", ECHO, **top)
        return subprocess.run([sys.executable, "-m", "daemon", "--check-config", "-c", str(path)],
                              capture_output=True, text=True, env=env, timeout=60)

    lines = problems(check(cluster=REDIS))
    assert any(line.endswith("cluster.redis is set but the Redis client (redis-py) is not installed: "
                             "pip install 'daemond[cluster]'") for line in lines), lines
    assert check().returncode == 0  # standalone needs no Redis client


def test_a_url_the_redis_client_cannot_use_ends_the_start_with_one_line(tmp_path):
    # --check-config takes the URL's form; redis-py refuses its options at start: no traceback
    path = write_config(tmp_path, ECHO, cluster={"redis": "redis://127.0.0.1:6379/0?socket_timeout=soon"})
    result = subprocess.run([sys.executable, "-m", "daemon", "-c", str(path), "--no-console"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78 and "Traceback" not in result.stderr, result
    assert "cluster.redis:" in result.stderr, result.stderr
