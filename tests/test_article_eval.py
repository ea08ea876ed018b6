"""CI gate: the bundled article's own evaluation set, with the real default model and e5-small.

The floors are today's measured levels (see README) less one question, so that a
change that makes answers worse fails CI. The issue's targets are higher; see the README's table.
"""

import json

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.evaluate import is_hit, read_eval_set
from qa.lexical import terms
from qa.paths import BUNDLED_ARTICLE

from conftest import REPO

EVAL_SET = REPO / "eval" / "article.jsonl"


def test_eval_set_composition():
    items = read_eval_set(EVAL_SET)
    article = BUNDLED_ARTICLE.read_text(encoding="utf-8")
    languages = {item.id.split("-")[0] for item in items if item.answers}
    unanswerable = [item for item in items if not item.answers]
    assert len(items) >= 50
    assert {"en", "id"} <= languages and len(languages - {"en", "id"}) >= 3
    assert len(unanswerable) >= 10
    assert len([item for item in unanswerable if item.id.startswith("near-")]) >= 3  # on nearby topics
    # Every expected answer is really in the article, so a typo can't pass as a miss.
    assert all(is_hit(article, [answer]) for item in items for answer in item.answers)
    # Paraphrases share no word (no BM25 term) with the article, in Indonesian too.
    paraphrases = [item for item in items if "-paraphrase-" in item.id]
    assert len([item for item in paraphrases if item.id.startswith("id-")]) >= 3
    article_terms = set(terms(article))
    assert all(not set(terms(item.question)) & article_terms for item in paraphrases)


# Per model, today's measured levels less one question of slack each, so that a score
# that moves in the fifth decimal on another CPU doesn't fail CI (hit@1, hit@5 of 47
# answerable; at most this many of them wrongly refused; at least this many of 15
# unanswerable refused).
FLOORS = {
    # EmbeddingGemma (the default) today: Hit@1 44 of 47, Hit@5 47, 1 wrongly refused, 11 of 15 refused.
    "default": {"hit@1": 43 / 47, "hit@5": 46 / 47, "false_refusals": 2, "no_answer_correct": 10},
    # e5-small today: Hit@1 41 of 47, Hit@5 47, 3 wrongly refused, 10 of 15 refused.
    "e5-small": {"hit@1": 40 / 47, "hit@5": 46 / 47, "false_refusals": 4, "no_answer_correct": 9},
}


@pytest.mark.model
@pytest.mark.slow  # over 3 s: the whole article eval set
@pytest.mark.parametrize("model", FLOORS)
def test_article_eval_gate(tmp_path, model):
    runner = CliRunner()
    index_dir = str(tmp_path / "index")
    chosen = [] if model == "default" else ["--model", model]
    assert runner.invoke(app, ["index", "--index-dir", index_dir, *chosen]).exit_code == 0
    result = runner.invoke(app, ["eval", "--json", "--index-dir", index_dir, str(EVAL_SET)])
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    floor = FLOORS[model]
    assert m["hit@1"] >= floor["hit@1"], m
    assert m["hit@5"] >= floor["hit@5"], m
    assert m["false_refusals"] <= floor["false_refusals"], m
    assert m["no_answer_correct"] >= floor["no_answer_correct"], m
