"""Reward-model data builders: R1/R2 segment labels, R3 coverage preferences, holistic pairs."""

import difflib
import random

import numpy as np
import pytest

from fgjax.data import qa_feedback_files as files
from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_builders as rb
from fgjax.data import rm_coverage as rc

IGN = rb.IGNORE_LABEL

# Sentences (0, 100) (101, 116) (117, 178). Sub-sentences: the comma after "art," would cut a
# 2-word piece "holds art," -> the 5-word rule merges it into the piece before it, so the
# first sentence has 2 sub-sentences (0, 48) and (49, 100); "museum," does not cut (short
# first piece).
ANSWER = (
    "The museum, founded in the year 1793, holds art, many old paintings and fine sculptures "
    "from Europe. It is in Paris. It was a royal palace before the revolution of the year 1789."
)
SENTENCES = [(0, 100), (101, 116), (117, 178)]
SUBSENTENCES = [(0, 48), (49, 100), (101, 116), (117, 178)]


def _span(error_type: str, phrase: str) -> schema.ErrorSpan:
    start = ANSWER.index(phrase)
    return schema.ErrorSpan(error_type, start, start + len(phrase), "")


def test_segments_follow_the_five_word_merge_rule():
    assert list(rb.answer_segments(ANSWER, "sentence")) == SENTENCES
    assert list(rb.answer_segments(ANSWER, "subsentence")) == SUBSENTENCES
    assert ANSWER[0:48].endswith("holds art,")


# (errors, R1 labels per sub-sentence, R2 labels per sentence) — worked out by hand.
ATTRIBUTION_CASES = {
    "irrelevant span inside the merged first piece": (
        [("Irrelevant", "founded in the year 1793, holds art,")], (1, 0, 0, 0), (IGN, 0, 0)),
    "irrelevant second piece": (
        [("Irrelevant", "many old paintings and fine sculptures from Europe.")],
        (0, 1, 0, 0), (IGN, 0, 0)),
    "redundant NF + unverifiable F in different sentences": (
        [("Redundant", "founded in the year 1793, holds art,"), ("Unverifiable", "in Paris.")],
        (1, 0, 0, 0), (IGN, 1, 0)),
    "incoherent span of 4 words is dropped (R1 and R2)": (
        [("Incoherent", "It is in Paris.")], (0, 0, 0, 0), (0, 0, 0)),
    "incoherent span of 7 words": (
        [("Incoherent", "before the revolution of the year 1789.")], (0, 0, 0, 1), (0, 0, IGN)),
    "wrong-grounding of 2 words: no length filter, F-ERR only": (
        [("Wrong-Grounding", "royal palace")], (0, 0, 0, 0), (0, 0, 1)),
    "F-ERR word beats NF-ERR words in the same sentence": (
        [("Wrong-Grounding", "royal palace"),
         ("Irrelevant", "before the revolution of the year 1789.")], (0, 0, 0, 1), (0, 0, 1)),
    "span across a sentence boundary marks both": (
        [("Irrelevant", "from Europe. It is in Paris.")], (0, 1, 1, 0), (IGN, IGN, 0)),
}


@pytest.mark.parametrize("case", sorted(ATTRIBUTION_CASES))
def test_span_attribution(case):
    spans, r1, r2 = ATTRIBUTION_CASES[case]
    errors = [_span(t, phrase) for t, phrase in spans]
    assert rb.segment_labels(ANSWER, SUBSENTENCES, errors, "NF-ERR") == r1
    assert rb.segment_labels(ANSWER, SENTENCES, errors, "F-ERR") == r2


def _record(prediction_1: str, errors, passages=None, **overrides) -> dict:
    record = {
        "question": "What is  the museum?",
        "passages": passages or [["Louvre", "The Louvre is a museum.", "It is in Paris."]],
        "gold": "A museum.",
        "prediction 1": prediction_1,
        "prediction 2": "A museum.",
        "prediction 3": "A palace.",
        "prediction 4": "A museum in Paris.",
        "feedback": {
            "errors": [
                {"error type": t, "start": s, "end": e, "explanation": ""} for t, s, e in errors
            ],
            "missing-info": [],
            "corrected-prediction": prediction_1,
        },
        "preference": [1, 1, 0, 2, 1, 0],
    }
    record.update(overrides)
    return record


def _parse(*records: dict) -> tuple[schema.FeedbackRecord, ...]:
    return schema.parse_feedback(list(records), "<test>")


def test_relevance_and_factuality_builders():
    only_nf = [("Irrelevant", 0, 100), ("Redundant", 101, 178)]  # every sentence NF-ERR only
    wrong = _span("Wrong-Grounding", "royal palace")
    records = _parse(
        _record(ANSWER, only_nf),
        _record(ANSWER, [("Wrong-Grounding", wrong.start, wrong.end)]),
    )
    r1 = rb.build_relevance_examples(records)
    assert [e.record_index for e in r1] == [0, 1]
    assert r1[0].labels == (1, 1, 1, 1) and r1[1].labels == (0, 0, 0, 0)
    assert r1[0].prompt == "question: What is the museum? answer:"
    assert r1[0].segments == tuple(SUBSENTENCES) and r1[0].answer == ANSWER

    r2 = rb.build_factuality_examples(records)
    assert [e.record_index for e in r2] == [1]  # record 0: every label ignored -> dropped
    assert r2[0].labels == (0, 0, 1) and r2[0].segments == tuple(SENTENCES)
    assert r2[0].prompt == (
        "question: What is the museum? context: wikipage: Louvre text: The Louvre is a museum. "
        "It is in Paris. answer:"
    )


def test_rm_prompt_separates_passages_like_the_policy_prompt():
    prompt = rb.rm_prompt("Q ?", [("A b", "x  y"), ("C", "z")])
    assert prompt == "question: Q ? context: wikipage: A b text: x y | wikipage: C text: z answer:"
    policy = schema.QAPrompt("Q ?", "question: Q ?  context: wikipage: A b text: x\ny", (), ())
    assert rb.policy_rm_prompt(policy, with_passages=True) == (
        "question: Q ? context: wikipage: A b text: x y answer:"
    )
    assert rb.policy_rm_prompt(policy, with_passages=False) == "question: Q ? answer:"


def test_dev_policy_prompts_match_feedback_prompts(qa_feedback_dir):
    records = files.load_feedback_split(qa_feedback_dir, "dev")
    policy = {p.question: p for p in files.load_prompts_split(qa_feedback_dir, "dev")}
    same = sum(
        rb.rm_prompt(r.question, rb.feedback_passages(r))
        == rb.policy_rm_prompt(policy[r.question], with_passages=True)
        for r in records
    )
    assert same == 487  # the other 13 differ by a space inside a passage


def test_dev_examples_checked_by_hand(qa_feedback_dir):
    """Dev records 13 and 71 (syntok splits), labels read off the spans by hand."""
    records = files.load_feedback_split(qa_feedback_dir, "dev")
    r1 = {e.record_index: e for e in rb.build_relevance_examples(records[:72])}
    r2 = {e.record_index: e for e in rb.build_factuality_examples(records[:72])}
    # 13: a Wrong-Grounding span ends sentence 2; Irrelevant (22 words) is the whole third
    # sentence.
    assert r1[13].labels == (0, 0, 0, 0, 1) and r2[13].labels == (0, 1, IGN)
    # 71: Wrong-Grounding / Unverifiable in every sentence; Incoherent (12 words) covers two
    # pieces, its text up to its comma and the rest; Redundant (7 words) is the last piece.
    assert r1[71].labels == (0, 0, 0, 0, 0, 0, 1, 1, 0, 1)
    assert r2[71].labels == (1, 1, 1)
    answer = records[71].predictions[0]
    incoherent, = (e for e in records[71].feedback.errors if e.error_type == "Incoherent")
    span = answer[incoherent.start:incoherent.end]
    start, end = r1[71].segments[6]
    assert (start, answer[start:end]) == (incoherent.start, span[: span.index(",") + 1])


# --- R3 -------------------------------------------------------------------------------------

EIFFEL = [
    "Eiffel Tower",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "It was designed by the engineer Gustave Eiffel and built from 1887 to 1889.",
    "The tower is 330 metres tall and was the tallest structure in the world until 1930.",
]
PARIS = ["Paris", "Paris is the capital and most populous city of France.",
         "The city hosts millions of tourists every single year."]


def _coverage_record(prediction_1: str, missing: list, corrected: str | None = None) -> dict:
    record = _record(prediction_1, [], passages=[EIFFEL, PARIS])
    record["prediction 2"] = f"{EIFFEL[1]}  {EIFFEL[2]}"
    record["prediction 3"] = PARIS[1]
    record["prediction 4"] = EIFFEL[2].replace("the engineer", "engineer")  # near match
    record["feedback"]["corrected-prediction"] = corrected or " ".join(EIFFEL[1:])
    record["feedback"]["missing-info"] = [
        {"error type": t, "passage_id": p, "sentence_id": s} for t, p, s in missing
    ]
    return record


def test_coverage_minor_discount_and_rederived_preferences():
    minor, major = "Missing-Minor-Auxiliary", "Missing-Major-Auxiliary"
    missing = [(minor, 1, [3]), (minor, 1, [2]), (major, 1, [2])]
    (record,) = _parse(_coverage_record(EIFFEL[1], missing))
    c = rb.coverage_record(0, record)
    # (1, 3) is flagged Minor only and its sub-sentence is not in prediction 1 -> discounted;
    # (1, 2) is also flagged Major -> kept.
    assert c.info_sentences == ((1, 1), (1, 2))
    assert c.coverage == (0.5, 1.0, 0.0, 0.5)
    assert c.preference == (2, 1, 0, 1, 1, 2)

    # Prediction 1 holds the Minor sentence (case differs): no discount; its match is fuzzy.
    upper = EIFFEL[3].replace("tower", "Tower")
    (record,) = _parse(_coverage_record(f"{EIFFEL[1]} {upper}", missing))
    c = rb.coverage_record(0, record)
    assert c.info_sentences == ((1, 1), (1, 2), (1, 3))
    assert c.coverage == (2 / 3, 2 / 3, 0.0, 1 / 3)
    assert c.preference == (0, 1, 1, 1, 1, 2)

    pairs = rb.build_completeness_pairs([record], [c])
    assert [p.prediction_indices for p in pairs] == [(0, 2), (0, 3), (1, 2), (1, 3), (3, 2)]
    assert pairs[-1].preferred == record.predictions[3] and pairs[-1].other == PARIS[1]


def test_records_without_information_sentences_are_skipped():
    unrelated = "Bananas are yellow fruit that grow in warm countries."
    records = _parse(
        _coverage_record(EIFFEL[1], [], corrected=unrelated),
        _coverage_record(EIFFEL[1], []),
    )
    assert rb.coverage_record(0, records[0]) is None
    assert [c.record_index for c in rb.build_coverage_records(records)] == [1]


def test_best_match_threshold():
    index = rc.PassageSentences(_parse(_coverage_record(EIFFEL[1], []))[0].passages)
    near = EIFFEL[2].replace("the engineer", "engineer")
    match = index.best_match(near)
    assert match.sentence_id == (1, 2) and rc.MIN_SIMILARITY <= match.similarity < 1.0
    far = index.best_match("Gustave Eiffel was French.")
    assert far.similarity < rc.MIN_SIMILARITY
    assert rc.matched_sentences([near, "Gustave Eiffel was French."], index) == [match]


def _difflib_similarity(sentence: str, target: str) -> float:
    """The release's rule written plainly with difflib (reference for the NumPy version)."""
    n = len(target.split()) + int(0.05 * len(target.split()))
    padding = n - len(sentence.split()) + 1
    context = sentence + " #" * padding if padding > 0 else sentence
    if target in context:
        return 1.0
    words, best = context.split(), 0.0
    for s in range(len(words) - n + 1):
        best = max(best, difflib.SequenceMatcher(None, " ".join(words[s : s + n]), target)
                   .quick_ratio())
    return best


def test_vectorised_similarity_equals_difflib_on_dev(qa_feedback_dir):
    records = files.load_feedback_split(qa_feedback_dir, "dev")
    rng = random.Random(0)
    for record in rng.sample(records, 12):
        index = rc.PassageSentences(record.passages)
        for _ in range(6):
            words = rng.choice(record.predictions).split()
            a = rng.randrange(len(words))
            target = " ".join(words[a : a + rng.randint(1, 30)])
            if rng.random() < 0.2:
                target += " # #"  # pads count as '#' characters too
            expected = [_difflib_similarity(s, target) for s in index.texts]
            np.testing.assert_array_equal(index.similarities(target), expected)


def test_preferences_from_scores_and_holistic_pairs():
    assert rc.preferences_from_scores([0.5, 0.5, 1.0, 0.0]) == (0, 2, 1, 2, 1, 1)
    (record,) = _parse(_record(ANSWER, [], preference=[1, 2, 0, 0, 2, 1]))
    pairs = rb.build_holistic_pairs([record])
    assert [p.prediction_indices for p in pairs] == [(0, 1), (2, 0), (3, 1), (2, 3)]
    assert pairs[0].preferred == ANSWER and pairs[0].other == "A museum."
    assert pairs[0].prompt == rb.rm_prompt(record.question, rb.feedback_passages(record))
