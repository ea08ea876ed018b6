"""Text from documents and file names made safe to print: no control character reaches a terminal.

A document, or a file's name, can hold escape sequences that a terminal obeys: set the
window title, clear the screen, move the cursor, or a newline that forges a line of qa's
own output. Everything qa prints as text goes through here; ``--json`` output keeps the
true text, escaped by JSON.
"""

from __future__ import annotations

import re
from typing import Iterable

from rich.console import Console
from rich.segment import Segment

# C0 controls but tab and line feed, DEL, C1 controls (U+0080-U+009F: U+009B is a CSI
# to some terminals), and lone surrogates (bytes of a file name that isn't UTF-8).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_OR_BREAK = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(match: re.Match) -> str:
    if match.group() in _NAMED:
        return _NAMED[match.group()]
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode: show the byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Return ``text`` with every control character but tab and newline shown as ``\\xNN``."""
    return _CONTROL.sub(_escaped, text)


def one_line(text: str) -> str:
    """Return ``text`` for a one-line place (a file name, a header): line breaks and tabs escaped too."""
    return _CONTROL_OR_BREAK.sub(_escaped, text)


def json_safe(encoded: str) -> str:
    """Return JSON text with C1 controls, DEL and lone surrogates written as ``\\uXXXX`` escapes.

    ``json.dumps(..., ensure_ascii=False)`` escapes only C0; the result still parses to the
    same values, and nothing in it is a raw control character.
    """
    return re.sub(r"[\x7f-\x9f\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", encoded)


class SafeConsole(Console):
    """A rich console that escapes control characters in the text it renders.

    Styles and rich's own control sequences (a live progress line's cursor moves, a
    clear screen asked for) are kept; only the text of ordinary segments is escaped.
    """

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            segment if segment.control else Segment(printable(segment.text), segment.style)
            for segment in buffer
        )
