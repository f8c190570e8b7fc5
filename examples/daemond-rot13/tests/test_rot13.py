"""The plugin's own tests: a real daemon, from the daemond_factory fixture daemond provides."""

from daemond_rot13 import shift_text


def test_shift_text():
    assert shift_text("Hello, World!", 13) == "Uryyb, Jbeyq!"
    assert shift_text("abc xyz", 1) == "bcd yza"


def test_rot13_over_a_socket(daemond_factory):
    d = daemond_factory({"rot": {"plugins": ["rot13"]}})
    with d.client("rot") as c:
        assert c.read_line() == "+OK rot13 ready"
        assert c.command("hello")[1] == "+OK uryyb"
        assert c.command("//slashed")[1] == "+OK /fynfurq"
        lines, final = c.command("/help")
        assert "HELP TEXT - answers TEXT shifted by 13" in lines


def test_shift_is_a_validated_setting(daemond_factory):
    d = daemond_factory({"rot": {"plugins": ["rot13"]}}, plugins={"rot13": {"shift": 1}})
    with d.client("rot") as c:
        assert c.read_line() == "+OK rot1 ready"
        assert c.command("HAL")[1] == "+OK IBM"
