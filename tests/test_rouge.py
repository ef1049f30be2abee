"""ROUGE-Lsum against the ``rouge-score`` package (the reference implementation)."""

import pytest
from rouge_score import rouge_scorer

from fgjax import rouge
from fgjax.text import split_sentences

CASES = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("The cat sat on the mat.", "A dog lay on a rug."),
    ("the cat was found under the bed\nthe cat was under the bed", "the tiny cat was under bed"),
    (
        "Police killed the gunman.\nThe gunman was shot dead by police.",
        "The gunman, police said, was killed.\nPolice shot the gunman dead yesterday!",
    ),
    ("A B c 1999's e-mail; x-y-z\n\nrepeat repeat repeat", "repeat a b c 1999 s email x y"),
    ("", "something"),
    ("!!! ???", "words here"),
    (
        "Season 20 of Law & Order: SVU aired in 2018.\nIt had 24 episodes.",
        "The twentieth season aired in 2018 and it had 24 episodes, the 400th among them.",
    ),
]


@pytest.mark.parametrize("reference,candidate", CASES)
def test_rouge_lsum_matches_rouge_score(reference, candidate):
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)
    want = scorer.score(reference, candidate)["rougeLsum"]
    got = rouge.rouge_lsum(reference, candidate)
    assert got.precision == pytest.approx(want.precision, abs=1e-12)
    assert got.recall == pytest.approx(want.recall, abs=1e-12)
    assert got.fmeasure == pytest.approx(want.fmeasure, abs=1e-12)


def test_tokenizer_matches_rouge_score():
    from rouge_score import tokenize

    text = "Hello, World! It's 3:45pm -- naïve café Ünïcode_x"
    assert rouge.tokenize(text) == tokenize.tokenize(text, None)


def test_best_of_references_with_sentences_on_lines():
    split = lambda text: split_sentences(text, "syntok")
    refs = ["The sky is blue. Grass is green.", "Completely different words only."]
    candidate = "Grass is green. The sky is blue."
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)
    lined = lambda t: rouge.sentences_per_line(t, split)
    assert lined(candidate) == "Grass is green.\nThe sky is blue."
    want = max(scorer.score(lined(r), lined(candidate))["rougeLsum"].fmeasure for r in refs)
    assert rouge.best_rouge_lsum_f1(refs, candidate, split) == pytest.approx(100 * want)
    # Sentence-level union: reordering whole sentences keeps a perfect score.
    assert want == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least one reference"):
        rouge.best_rouge_lsum_f1([], candidate, split)
