"""The operator's room commands: ``rooms [list] | create NAME | delete NAME | topic NAME TEXT``.

They run on the control thread (``daemonctl``) or the console. A name may be
given without its ``#`` (the shell reads ``#dev`` as a comment unless quoted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon import Argument, CommandError, ControlCommand

from plugins.chat.rooms import RoomError

if TYPE_CHECKING:  # pragma: no cover
    from plugins.chat import ChatPlugin

ACTIONS = ("list", "create", "delete", "topic")


def control_commands(plugin: ChatPlugin) -> list[ControlCommand]:
    return [
        ControlCommand("rooms", "chat rooms: list | create NAME | delete NAME | topic NAME TEXT",
                       lambda args: rooms(plugin, args), render=render_rooms, confirm=_question, args=(
                           Argument("action", "list, create, delete or topic", choices=ACTIONS, default="list"),
                           Argument("name", "the room (its # may be left out)"),
                           Argument("text", "the new topic (the rest of the line)", rest=True),
                       )),
    ]


def _question(args: dict[str, Any]) -> str | None:
    """Only ``delete`` asks first (``--yes`` skips it)."""
    if args.get("action") != "delete":
        return None
    return f"Delete room {_name(args.get('name') or '?')}, its history and topic, and part its members?"


def _name(name: str) -> str:
    return name if name.startswith("#") else "#" + name


def rooms(plugin: ChatPlugin, args: dict[str, Any]) -> Any:
    if plugin.rooms is None:
        raise CommandError("the chat rooms are not open (is the daemon running?)")
    action, name, text = args["action"], args.get("name"), args.get("text")
    if action == "list":
        try:
            return [{"name": r.name, "members": r.members, "messages": r.messages, "topic": r.topic}
                    for r in plugin.rooms.list()]
        except RoomError as exc:  # cluster mode, Redis away
            raise CommandError(exc.text, details={"error": exc.token}) from None
    if not name:
        raise CommandError(f"rooms {action}: which room? (rooms {action} NAME, its # left out or quoted)")
    name = _name(name)
    try:
        if action == "create":
            room = plugin.rooms.create(name)
            plugin.log.info("chat: room %s created (operator)", room.name)
            return f"created {room.name}"
        if action == "delete":
            members = plugin.rooms.delete(name)
            plugin.log.info("chat: room %s deleted (operator); %d members parted", name, len(members))
            return f"deleted {name}; {len(members)} members parted"
        if text is None:
            return plugin.rooms.topic(name)
        topic = plugin.rooms.topic(name, text)
        plugin.log.info("chat: topic of %s set (operator): %s", name, topic)
        return f"topic of {name}: {topic}"
    except RoomError as exc:
        raise CommandError(exc.text, details={"error": exc.token}) from None


def render_rooms(result: Any) -> str:
    """``rooms list`` as one line per room; other actions' text as is."""
    if not isinstance(result, list):
        return str(result)
    if not result:
        return "no rooms"
    name = max(len(r["name"]) for r in result)  # columns that line up
    members = max(len(str(r["members"])) for r in result)
    messages = max(len(str(r["messages"])) for r in result)
    return "\n".join(f"{r['name']:<{name}}  {r['members']:>{members}} members  {r['messages']:>{messages}} messages"
                      + (f"  topic: {r['topic']}" if r["topic"] else "") for r in result)
