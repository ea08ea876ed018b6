"""Follow-up questions: when a question leans on the one before it.

"Which drones did Russia import?" then "What will they be used for?": the second
question says "they" and means the drones. A question that refers back like this
is retrieved together with the previous one; a question that stands alone is not.
"""

from __future__ import annotations

import re

from qa.retriever import Answer, Retriever

# Words that point back to something said before, in the languages people ask in most.
_REFERRING = {
    # English
    "they", "them", "their", "theirs", "it", "its", "these", "those", "he", "him", "his", "she",
    "her", "there", "then", "such", "same", "other", "others", "also",
    # Indonesian / Malay
    "mereka", "tersebut", "dia", "ia", "beliau", "itu", "ini", "sana", "situ", "juga",
    # French, Spanish, Portuguese, German
    "ils", "elles", "eux", "leur", "leurs", "cela", "ça", "ellos", "ellas", "eso", "esto", "esos",
    "estos", "eles", "elas", "isso", "isto", "sie", "ihnen", "diese", "dieser", "dort",
}
_WORD = re.compile(r"\w+", re.UNICODE)


def refers_back(question: str) -> bool:
    """Return True when ``question`` has a word that points to an earlier question.

    Indonesian "-nya" endings ("digunakannya", "harganya") count too.
    """
    words = _WORD.findall(question.lower())
    if any(word in _REFERRING for word in words):
        return True
    return any(len(word) > 5 and word.endswith("nya") for word in words)


class Conversation:
    """The questions asked so far, and the rule for using them in retrieval."""

    def __init__(self):
        self.topic: str | None = None

    def reset(self) -> None:
        """Forget the conversation."""
        self.topic = None

    def ask(self, retriever: Retriever, question: str, top_k: int) -> Answer:
        """Answer ``question``, using the conversation when the question depends on it.

        A question that refers back ("they", "itu", ...) is retrieved together with the
        previous self-contained question, and so is one that finds no answer alone
        but does with it. The self-contained question stays the conversation's topic.
        """
        alone = retriever.ask(question, top_k=top_k)
        if self.topic is None:
            self.topic = question
            return alone
        referring = refers_back(question)
        if referring or not alone.found:
            together = retriever.ask(question, top_k=top_k, context=self.topic)
            if together.found and (referring or together.margin > alone.margin):
                return together
        self.topic = question
        return alone
