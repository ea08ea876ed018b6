import pytest

from qa.followup import Conversation, refers_back
from qa.retriever import Answer


@pytest.mark.parametrize("question", ["What will they be used for?", "Untuk apa drone tersebut digunakan?",
                                      "Berapa harganya?", "Que vont-ils en faire, ils?", "Wofür werden diese benutzt?",
                                      "Для чего они будут использоваться?", "Which news agency reported it?"])
def test_questions_that_refer_back(question):
    assert refers_back(question)


@pytest.mark.parametrize("question", [
    "Which drones did Russia import?", "Kapan Rusia menginvasi Ukraina?", "Who is Kim Jong-Un?",
    # Words that look like references but aren't, here.
    "Is there a shortage of shells?", "How many soldiers are there?", "Apa itu Shahed?",
    "Siapa presiden Rusia saat ini?", "Apa yang sebenarnya dibeli Rusia?", "Können Sie mir sagen, wer Putin ist?",
])
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


def test_an_unanswerable_question_stays_unanswered_after_an_answered_one():
    # Asked together with an on-topic question, anything finds the topic's passage;
    # a question that doesn't refer back must not be rescued that way.
    class TopicAlwaysWins(ScriptedRetriever):
        def ask(self, question, top_k=1, context=None):
            self.calls.append((question, context))
            found = context is not None or question == "Which drones?"
            return Answer(question, found, [], 0.1 if found else -0.1, context)

    retriever = TopicAlwaysWins(set())
    conversation = Conversation()
    conversation.ask(retriever, "Which drones?", 1)
    answer = conversation.ask(retriever, "What is the capital of France?", 1)
    assert not answer.found and answer.context is None
    assert all(context is None for _, context in retriever.calls)
    assert conversation.topic == "Which drones?"


def test_only_an_answered_self_contained_question_becomes_the_topic():
    retriever = ScriptedRetriever({"Which drones?", "Which drones? | What are they for?"})
    conversation = Conversation()
    conversation.ask(retriever, "What are they for?", 1)  # refers back to nothing
    assert conversation.topic is None
    conversation.ask(retriever, "Which drones?", 1)
    conversation.ask(retriever, "Hello", 1)  # answers nothing
    assert conversation.topic == "Which drones?"
    assert conversation.ask(retriever, "What are they for?", 1).context == "Which drones?"


def test_a_follow_up_keeps_the_topic_it_was_read_with():
    retriever = ScriptedRetriever({"Which drones?", "Which drones? | What are they for?",
                                   "Which drones? | Who makes them?"})
    conversation = Conversation()
    conversation.ask(retriever, "Which drones?", 1)
    conversation.ask(retriever, "What are they for?", 1)
    assert conversation.ask(retriever, "Who makes them?", 1).context == "Which drones?"
