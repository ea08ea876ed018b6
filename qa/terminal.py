"""Text from documents, file names and indexes made harmless for a terminal.

A document, a file name or a forged index can hold escape sequences: ``ESC]0;...``
retitles the window, ``ESC[2J`` clears the screen, a carriage return overwrites what
was printed, and a line feed in a file name forges a ``[1] name, line N`` header.
Everything qa prints to a terminal goes through :func:`terminal_text` (running text,
line feeds and tabs kept) or :func:`terminal_line` (one field of one line). Both show
each such character as a visible escape (``\\x1b``), so nothing is lost from view.
``--json`` output is not filtered: JSON escapes control characters itself.

No import of rich or anything heavy here: the CLI's error path uses it.
"""

from __future__ import annotations

import re

# C0 except tab and line feed, DEL, C1 (ESC is 0x1b; 0x9b is the one-byte CSI), and
# lone surrogates (a file name that is not UTF-8 decodes to U+DC80-U+DCFF).
_UNSAFE_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSAFE_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _visible(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFF:
        return f"\\u{code:04x}"
    return {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(code, f"\\x{code:02x}")


def terminal_text(text: str) -> str:
    """Return ``text`` with every control character except line feed and tab shown escaped.

    Takes any string (document text, a chat answer); returns it unchanged when it
    holds nothing a terminal would act on, the common case, else with C0, DEL, C1
    and lone surrogates written as ``\\x1b``, ``\\x9b``, ``\\xe9`` (a byte of a
    non-UTF-8 file name) or ``\\ud800``. Exists so that no document can move the
    cursor, clear the screen or retitle the window of the person reading its answer.
    """
    return _UNSAFE_IN_TEXT.sub(_visible, text)


def terminal_line(text: str) -> str:
    """Return ``text`` safe as one field of one line: also line feeds and tabs escaped.

    For file names, titles, paths, questions echoed and error messages, whose line
    breaks would forge the lines qa prints around them.
    """
    return _UNSAFE_IN_LINE.sub(_visible, text)
