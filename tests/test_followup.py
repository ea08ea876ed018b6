import pytest

from qa.followup import Conversation, refers_back
from qa.retriever import Answer


@pytest.mark.parametrize("question", ["What will they be used for?", "Untuk apa drone itu digunakan?",
                                      "Berapa harganya?", "Que vont-ils en faire, ils?", "Wofür werden sie benutzt?"])
def test_questions_that_refer_back(question):
    assert refers_back(question)


@pytest.mark.parametrize("question", ["Which drones did Russia import?", "Kapan Rusia menginvasi Ukraina?",
                                      "Who is Kim Jong-Un?"])
def test_questions_that_stand_alone(question):
    assert not refers_back(question)


class ScriptedRetriever:
    """Finds an answer only for questions listed in ``answerable`` (alone or with context)."""

    def __init__(self, answerable):
        self.answerable = answerable
        self.calls = []

    def ask(self, question, top_k=1, context=None):
        self.calls.append((question, context))
        key = f"{context} | {question}" if context else question
        found = key in self.answerable
        return Answer(question, found, [], 0.1 if found else -0.1, context)


def test_follow_up_uses_the_previous_question_and_reset_forgets_it():
    retriever = ScriptedRetriever({"Which drones?", "Which drones? | What are they for?"})
    conversation = Conversation()
    assert conversation.ask(retriever, "Which drones?", 1).found
    answer = conversation.ask(retriever, "What are they for?", 1)
    assert answer.found and answer.context == "Which drones?"
    conversation.reset()
    answer = conversation.ask(retriever, "What are they for?", 1)
    assert not answer.found and answer.context is None


def test_standalone_question_does_not_use_the_conversation():
    retriever = ScriptedRetriever({"Which drones?", "When was the invasion?",
                                   "Which drones? | When was the invasion?"})
    conversation = Conversation()
    conversation.ask(retriever, "Which drones?", 1)
    answer = conversation.ask(retriever, "When was the invasion?", 1)
    assert answer.context is None
    assert ("When was the invasion?", "Which drones?") not in retriever.calls
    assert conversation.topic == "When was the invasion?"
