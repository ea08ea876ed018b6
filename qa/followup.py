"""Follow-up questions: when a question leans on the one before it.

"Which drones did Russia import?" then "What will they be used for?": the second
question says "they" and means the drones. A question that refers back like this
is retrieved together with the conversation's topic; a question that stands alone is
not, and an unanswerable question stays unanswered however the conversation went.
"""

from __future__ import annotations

import re

from qa.retriever import Answer, QuestionError, Retriever, clean_question

# Pronouns and "the aforementioned" words that point back to something said before.
# Words that are as often not anaphoric are left out: "there" ("is there"), "also",
# "other", Indonesian "itu"/"ini" ("Apa itu X?" is "What is X?"), German "Sie" (polite
# "you"). Pro-drop questions ("¿Para qué se usarán?") say nothing to detect.
_REFERRING = {
    # English
    "they", "them", "their", "theirs", "it", "its", "these", "those", "he", "him", "his", "she", "her",
    # Indonesian / Malay
    "mereka", "tersebut", "dia", "ia", "beliau",
    # French, Spanish, Portuguese, German
    "ils", "elles", "eux", "leur", "leurs", "cela", "ça", "ellos", "ellas", "eso", "esos", "esas",
    "eles", "elas", "isso", "ihnen", "diese", "dieser", "diesen",
    # Russian
    "они", "их", "им", "ими", "них", "он", "она", "оно", "его", "её", "ее", "это", "эти", "этих",
}
# Indonesian "-nya" often means "its"/"their" ("harganya", "digunakannya"), but ends
# many adverbs too ("sebenarnya" = actually).
_NYA_ADVERBS = {
    "sebenarnya", "biasanya", "selanjutnya", "lainnya", "sebelumnya", "sesudahnya", "setelahnya",
    "akhirnya", "misalnya", "umumnya", "khususnya", "terutamanya", "rupanya", "tampaknya",
    "sepertinya", "kemungkinannya", "seharusnya", "sesungguhnya", "seluruhnya", "semuanya",
    "sekitarnya", "selamanya", "awalnya", "pertamanya", "nyatanya", "agaknya", "mestinya",
    "hendaknya", "sebaiknya", "setidaknya", "sedikitnya", "katanya",
}
_WORD = re.compile(r"\w+", re.UNICODE)


def refers_back(question: str) -> bool:
    """Return True when ``question`` has a word that points to an earlier question.

    Indonesian "-nya" endings ("digunakannya", "harganya") count too, except in the
    adverbs that end that way.
    """
    words = _WORD.findall(question.lower())
    if any(word in _REFERRING for word in words):
        return True
    return any(len(word) > 5 and word.endswith("nya") and word not in _NYA_ADVERBS for word in words)


class Conversation:
    """The conversation's topic (its last self-contained, answered question), and the
    rule for using it in retrieval."""

    def __init__(self):
        self.topic: str | None = None

    def reset(self) -> None:
        """Forget the conversation."""
        self.topic = None

    def ask(self, retriever: Retriever, question: str, top_k: int) -> Answer:
        """Answer ``question``, using the conversation when the question depends on it.

        A question that refers back ("they", "tersebut", ...) is retrieved together with
        the topic, when that finds an answer. Any other question is answered alone:
        one the documents can't answer is refused even after an on-topic question.
        A self-contained question that finds an answer becomes the topic.
        """
        referring = refers_back(question)
        if referring and self.topic is not None:
            together = retriever.ask(question, top_k=top_k, context=self.topic)
            if together.found:
                return together
        alone = retriever.ask(question, top_k=top_k)
        if alone.found and not referring:
            try:
                self.topic = clean_question(question)
            except QuestionError:
                self.topic = None
        return alone
