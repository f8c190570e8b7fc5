"""What a user name and a password must look like (checked before anything is hashed)."""

from __future__ import annotations

import re
import unicodedata

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


def normalized_password(password: str) -> str:
    """What is hashed of a password: its NFC form, so that the same characters typed on
    another keyboard or system (composed or decomposed) are the same password."""
    return unicodedata.normalize("NFC", password)


def legacy_password_forms(password: str) -> list[str]:
    """Other forms a stored hash may have been made from, before passwords were NFC-normalised
    and lost only ASCII spaces at their ends: the password as typed, and that stripped of any
    Unicode whitespace. A login that matches one of them is accepted and rehashed."""
    forms: list[str] = []
    for form in (password, password.strip()):
        if form and form != normalized_password(password) and form not in forms:
            forms.append(form)
    return forms
