"""Safe text: what is left of a message once nothing in it can drive a terminal.

Removed before a message is stored or sent:

* whole escape sequences — CSI (``ESC [`` … final byte), OSC (``ESC ]`` … BEL
  or ST), DCS/SOS/PM/APC (``ESC P``/``X``/``^``/``_`` … ST), and two-character
  ``ESC x`` — including their 8-bit C1 forms (U+009B CSI, U+009D OSC, …);
* every other C0 control except TAB, DEL, and every C1 control;
* Unicode bidi controls: embeddings, overrides and isolates (U+202A–U+202E,
  U+2066–U+2069: the "Trojan Source" set) and the marks U+200E, U+200F and
  U+061C; and the line/paragraph separators U+2028/U+2029, which some clients
  render as line breaks.

Sequences are removed whole, so ``ESC [31m`` leaves nothing behind rather than a
stray ``[31m``. A string sequence (OSC, DCS, …) ends at its BEL or ST; an ESC
that does not start an ST ends it too and starts a sequence of its own, and an
unterminated one swallows the rest of the line — as a terminal's parser does.

The shape is one pass: each pattern below matches at every position where it
starts without ever backtracking (a string's body stops at the first BEL, ESC
or ST, and one of its endings always matches there), so sanitising costs time
linear in the line's length whatever it contains.

:func:`visible` says whether anything would show: a line of only spaces,
zero-width and format characters (U+200B, U+2060, U+FEFF, …) counts as empty.
"""

from __future__ import annotations

import re
import unicodedata

_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*+[\x20-\x2f]*+[\x40-\x7e]?+"  # CSI: parameters, intermediates, final
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])"  # OSC, DCS, SOS, PM, APC: ...
    r"[^\x07\x1b\x9c]*+(?:\x07|\x1b\\|\x9c|(?=\x1b)|\Z)"  # ... up to BEL, ST (ESC \ or U+009C), an ESC, or the end
    r"|\x1b[\x20-\x2f]*+[\x30-\x7e]?+"  # nF/Fp/Fe/Fs escapes: ESC, intermediates, final
)
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
#: letters that draw nothing (Hangul fillers, the braille blank)
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
#: categories that draw nothing on their own: format (zero-width), controls, separators, combining marks
_INVISIBLE_CATEGORIES = frozenset(("Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me"))


def sanitize(text: str) -> str:
    """``text`` without escape sequences, control characters or bidi controls."""
    if text.isprintable():  # the common case: nothing to remove (TAB is not printable, so it takes the slow path)
        return text
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


def visible(text: str) -> bool:
    """Whether ``text`` has a character that shows (not only spaces, zero-width or format characters)."""
    for char in text:
        if "!" <= char <= "~":  # printable ASCII: the common case
            return True
        if char not in _BLANK_LETTERS and unicodedata.category(char) not in _INVISIBLE_CATEGORIES:
            return True
    return False
