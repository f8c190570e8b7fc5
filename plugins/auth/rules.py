"""What a user name and a password must look like (checked before anything is hashed)."""

from __future__ import annotations

import re

NAME_PATTERN = r"[A-Za-z0-9_.-]{1,32}"
_NAME = re.compile(NAME_PATTERN, re.ASCII)

#: The default of the max_password setting: longer passwords are refused before hashing
#: (argon2 would take them, but nobody types them).
MAX_PASSWORD = 1024


def name_key(name: str) -> str:
    """The key a name is stored under: names are case-insensitive (``Alice`` is ``alice``)."""
    return name.lower()


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user name, or None."""
    if _NAME.fullmatch(name):
        return None
    return f"names are 1-32 characters of A-Z a-z 0-9 _ . - (pattern {NAME_PATTERN})"


def password_problem(password: str, min_length: int, max_length: int = MAX_PASSWORD) -> tuple[str, str] | None:
    """``(token, text)`` saying why ``password`` cannot be set, or None."""
    if len(password) > max_length:
        return "bad-password", f"passwords are at most {max_length} characters"
    if len(password) < min_length:
        return "weak-password", f"passwords need at least {min_length} characters"
    return None
