"""daemon.quickyaml: the quick reader daemonctl uses agrees with PyYAML, or leaves the file to it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from daemon.quickyaml import quick_control_settings
from daemon.testing import write_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def by_yaml(text: str) -> dict:
    doc = yaml.safe_load(text)
    control = doc.get("control") if isinstance(doc.get("control"), dict) else {}
    return {"state_dir": doc.get("state_dir"), "socket": control.get("socket")}


FOLLOWED = [
    "listeners: {e: {port: 1, plugins: [echo]}}\n",
    "state_dir: /var/lib/d\ncontrol:\n  socket: /run/d/c.sock\n  group: wheel\n",
    "state_dir: rel/dir   # a comment\ncontrol:\n    group: null\n    socket: 'it''s here'  # quoted\n",
    'control:\n  socket: "/x y/c.sock"\nstate_dir: ~/state\n',
    "# only\n\nstate_dir: null\ncontrol: null\nlisteners:\n  e:\n    port: 9\n    plugins: [echo]\n",
    "control: {}\n",
    "control:\n  # socket: /commented/out\n  socket: ~\n",
    "control:\n  socket: c.sock\nlisteners:\n  e:\n    socket: /not/this/one\n",
    "state_dir: /srv/daemond-2.0/state_x+y\r\ncontrol:\r\n  socket: s.sock\r\n",
    "state_dir : /spaced\ncontrol :\n  socket : ./s\n",
    "state_dir: +x\n",
]

LEFT_TO_PYYAML = [
    "",
    "# nothing\n",
    "---\nstate_dir: /a\n",
    "state_dir: &dir /a\n",
    "state_dir: !!str /a\n",
    "control: {socket: /flow.sock}\n",
    "control: &c\n  socket: /a\n",
    "control:\n  socket:\n    /on/the/next/line\n",
    "state_dir:\n  /next/line\n",
    "control:\n  socket: /a\n    /continued\n",
    'state_dir: "/with\\tescape"\n',
    "state_dir: 'unclosed\n",
    "state_dir: 123\n",
    "state_dir: yes\n",
    "state_dir: /a: b\n",
    "? state_dir\n: /a\n",
    "<<: *base\n",
    "control:\n  - socket: /a\n",
    "control:\n\tsocket: /a\n",
    '"state_dir": /a\n',
    "state_dir: @a\n",
    "state_dir: -\n",
    "state_dir: |\n  /a\n",
    "plugins: {\n  echo: {}\n}\n",
    "state_dir:/a\n",
    "state_dir: .inf\n",
    "state_dir: -1\n",
    "state_dir: /a#b\n",  # text to YAML, but rare in paths: the quick reader need not know
]


@pytest.mark.parametrize("text", FOLLOWED)
def test_quick_reader_agrees_with_pyyaml(text):
    assert quick_control_settings(text) == by_yaml(text)


@pytest.mark.parametrize("text", LEFT_TO_PYYAML)
def test_quick_reader_leaves_other_yaml_to_pyyaml(text):
    assert quick_control_settings(text) is None


def test_the_shipped_config_and_test_configs_are_read_quickly(tmp_path):
    shipped = (REPO_ROOT / "etc" / "daemond.yaml").read_text()
    assert quick_control_settings(shipped) == by_yaml(shipped) == {"state_dir": None, "socket": None}
    written = write_config(tmp_path, {"e": {"plugins": ["echo"]}}, control={"socket": str(tmp_path / "c.sock")}).read_text()
    assert quick_control_settings(written) == by_yaml(written)
    assert quick_control_settings(written)["socket"] == str(tmp_path / "c.sock")
