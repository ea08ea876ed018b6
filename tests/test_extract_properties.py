"""Hostile files: every extractor on arbitrary and mutated bytes, with hypothesis.

``qa.extract.extract_text`` parses untrusted files with third-party libraries
(PDFium, python-docx's zip and XML readers, trafilatura's HTML parser). Whatever
the bytes, it must return text or raise ``DocumentError`` with a one-line message:
never another exception, never a crash of the process, and in bounded time. Mutated
copies of the real fixtures reach deeper into the parsers than random bytes do.
QA_PROPERTY_EXAMPLES sets the examples a test (default 200), as in test_properties.py.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.documents import DocumentError
from qa.extract import extract_text

DATA = Path(__file__).parent / "data"
SUFFIXES = [".txt", ".md", ".html", ".pdf", ".docx", ".unknown"]
FIXTURES = {".pdf": "two_pages.pdf", ".docx": "sample.docx", ".html": "article.html"}

PROPERTY = settings(
    max_examples=int(os.environ.get("QA_PROPERTY_EXAMPLES", "200")),
    deadline=timedelta(milliseconds=int(os.environ.get("QA_PROPERTY_DEADLINE_MS", "5000"))),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(data: bytes, suffix: str) -> None:
    try:
        extracted = extract_text(data, suffix, "hostile" + suffix)
    except DocumentError as exc:
        message = str(exc)
        assert message.startswith("hostile") and "\n" not in message, message
        return
    assert isinstance(extracted.text, str) and extracted.text.strip()
    assert all(0 <= a <= b <= len(extracted.text) for a, b in zip(extracted.pages, extracted.pages[1:]))


@PROPERTY
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_any_bytes_give_text_or_a_one_line_error(data, suffix):
    check(data, suffix)


@pytest.mark.slow  # many mutated files: seconds
@pytest.mark.parametrize("suffix", sorted(FIXTURES))
@PROPERTY
@given(data=st.data())
def test_mutated_real_files_give_text_or_a_one_line_error(suffix, data):
    original = bytearray((DATA / FIXTURES[suffix]).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "splice"]))
        at = data.draw(st.integers(0, max(0, len(original) - 1)))
        if kind == "flip" and original:
            original[at] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del original[at : at + data.draw(st.integers(1, 512))]
        elif kind == "insert":
            original[at:at] = data.draw(st.binary(min_size=1, max_size=64))
        else:
            other = original[data.draw(st.integers(0, max(0, len(original) - 1))):][:256]
            original[at:at] = other
    check(bytes(original), suffix)
