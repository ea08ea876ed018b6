"""The text of an HTML page: its article (trafilatura), or all of its text when the page
is nested deeper than the parser reads.

Both return the page's blocks of text (paragraphs, list items, table rows), which
:mod:`qa.extract` joins with blank lines. The parsers are imported when a page is read.
"""

from __future__ import annotations

from typing import Any

# libxml2 (lxml, so trafilatura) stops building the tree 255 elements deep and
# drops what lies below: a page nested deeper looked like a page without text.
LXML_MAX_DEPTH = 255
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                        "param", "source", "track", "wbr"})
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "head"})


def flat_html_text(text: str) -> tuple[int, list[str]]:
    """Return how deep a page's elements nest, and its text (decoded) as paragraphs, without a tree.

    The standard library's HTML tokenizer keeps no tree, so any depth costs nothing
    more; a paragraph ends at every tag (it can't tell block from inline), and
    script, style and head are left out. Used only for a page nested deeper than
    :data:`LXML_MAX_DEPTH`, whose text the article extractor never sees.
    """
    from html.parser import HTMLParser

    class Flattener(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.depth = self.max_depth = self.skipping = 0
            self.blocks: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in _VOID_TAGS:
                self.depth += 1
                self.max_depth = max(self.max_depth, self.depth)
            self.skipping += tag in _SKIPPED_TAGS

        def handle_endtag(self, tag):
            if tag not in _VOID_TAGS:
                self.depth = max(0, self.depth - 1)
            self.skipping = max(0, self.skipping - (tag in _SKIPPED_TAGS))

        def handle_data(self, text):
            text = " ".join(text.split())
            if text and not self.skipping:
                self.blocks.append(text)

    parser = Flattener()
    parser.feed(text)
    parser.close()
    return parser.max_depth, parser.blocks


def html_article(data: bytes) -> tuple[str | None, list[str]]:
    """Return a web page's headline and the paragraphs of its main text (none if it has none)."""
    import trafilatura

    if b"html" not in data[:64].lower():
        # trafilatura rejects a fragment ("<p>..</p>" alone) as not HTML.
        data = b"<html><body>" + data + b"</body></html>"
    tree = trafilatura.load_html(data)
    if tree is None:
        return None, []
    title = _page_title(tree)
    # Comments are not the article; tables often are.
    result = trafilatura.bare_extraction(tree, include_comments=False, include_tables=True)
    if result is None or result.body is None:
        return title, []
    return title, _html_blocks(result.body)


def _page_title(tree: Any) -> str | None:
    """Return the page's headline: its og:title, else its first <h1>, else its <title>."""
    for found in (
        tree.xpath("//meta[@property='og:title']/@content"),
        [h.text_content() for h in tree.xpath("//h1")[:1]],
        [t.text_content() for t in tree.xpath("//title")[:1]],
    ):
        title = " ".join(found[0].split()) if found else ""
        if title:
            return title
    return None


def _html_blocks(body: Any) -> list[str]:
    """Turn trafilatura's output tree into paragraphs of text.

    Its children are blocks: ``p``, ``head``, ``quote``, ``code``, ``list`` (of
    ``item``) and ``table`` (of ``row`` of ``cell``); ``lb`` is a line break.
    A list or a table becomes one paragraph with a line per item or row.
    """
    blocks = []
    for element in body:
        if element.tag == "list":
            lines = [_element_text(item) for item in element.iterchildren("item")]
        elif element.tag == "table":
            lines = [
                " | ".join(filter(None, (_element_text(cell) for cell in row.iterchildren("cell"))))
                for row in element.iterchildren("row")
            ]
        else:
            lines = [_element_text(element)]
        block = "\n".join(line for line in lines if line)
        if block:
            blocks.append(block)
    return blocks


_LINE_TAGS = frozenset({"lb", "p", "head", "quote", "code", "list", "item", "table", "row", "cell"})


def _element_text(element: Any) -> str:
    """Return an element's text, a line per line break or nested block, spaces tidied."""
    for inner in element.iterdescendants(*_LINE_TAGS):
        inner.tail = "\n" + (inner.tail or "")
        if inner.tag != "lb":
            inner.text = "\n" + (inner.text or "")
    lines = (" ".join(line.split()) for line in "".join(element.itertext()).split("\n"))
    return "\n".join(line for line in lines if line)
