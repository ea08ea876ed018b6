"""JSON as qa writes it: strict, UTF-8, and lossless for file names that aren't UTF-8.

Python's ``json`` writes ``NaN`` and ``-Infinity``, which no other JSON parser
accepts, unless told not to; and with ``ensure_ascii=False`` it writes a lone
surrogate (a non-UTF-8 byte of a file name, decoded by ``os.fsdecode``) raw, which
can't be encoded as UTF-8 at all. :func:`dumps` avoids both.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def dumps(value: Any, **options: Any) -> str:
    """Return ``value`` as strict JSON text: no NaN or infinities, encodable as UTF-8.

    Takes any JSON-ready value and ``json.dumps`` options (``indent``, ``sort_keys``).
    Non-ASCII text is kept as is, unless the value holds a lone surrogate: then the
    whole text is written ASCII-escaped (``"caf\\udce9.txt"``), which any parser reads
    back to the same string. Raises ValueError for a NaN or an infinity, so that a bug
    shows up here rather than in the program that reads the output.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, **options)
    if _SURROGATE.search(text):
        text = json.dumps(value, ensure_ascii=True, allow_nan=False, **options)
    return text


def loads(data: str | bytes) -> Any:
    """Parse strict JSON: ``NaN``, ``Infinity`` and ``-Infinity`` are a ValueError, as
    for every other parser. Used for what qa reads back from an index."""
    return json.loads(data, parse_constant=_not_json)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
