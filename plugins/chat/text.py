"""Safe text: what is left of a message once nothing in it can drive a terminal.

Removed before a message is stored or sent:

* whole escape sequences — CSI (``ESC [`` … final byte), OSC (``ESC ]`` … BEL
  or ST), DCS/SOS/PM/APC (``ESC P``/``X``/``^``/``_`` … ST), and two-character
  ``ESC x`` — including their 8-bit C1 forms (U+009B CSI, U+009D OSC, …);
* every other C0 control except TAB, DEL, and every C1 control;
* Unicode bidi embeddings, overrides and isolates (U+202A–U+202E,
  U+2066–U+2069: the "Trojan Source" set) and the line/paragraph separators
  U+2028/U+2029, which some clients render as line breaks.

Sequences are removed whole, so ``ESC [31m`` leaves nothing behind rather than a
stray ``[31m``. An unterminated string sequence (OSC without its BEL/ST)
swallows the rest of the line, as a terminal would.
"""

from __future__ import annotations

import re

# ESC or 8-bit introducer, then the body of each sequence kind.
_STRING_BODY = r"[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|$)"  # up to BEL or ST (ESC \ or U+009C), or the end
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI params intermediates final
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])" + _STRING_BODY  # OSC, DCS, SOS, PM, APC
    + r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"  # nF/Fp/Fe/Fs escapes: ESC, intermediates, final
)
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def sanitize(text: str) -> str:
    """``text`` without escape sequences, control characters or bidi overrides."""
    if text.isprintable():  # the common case: nothing to remove (TAB is not printable, so it takes the slow path)
        return text
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))
