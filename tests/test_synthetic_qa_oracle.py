"""Synthetic QA oracle: each error type pinned on hand-written answers; schema and RM builders."""

import numpy as np
import pytest

from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_builders as rb
from fgjax.data import rm_tokenize
from fgjax.data import synthetic_demos as demos_lib
from fgjax.data import synthetic_oracle as oracle
from fgjax.data import synthetic_world as world_lib

# Talor Menvik: birth (passage 1, sentence 1), occupation (1, 3), work (1, 4) are stated;
# Orin Dask is a distractor; Talor Menvik's death and prize are not stated.
PROMPT = schema.QAPrompt(
    question="Who was Talor Menvik?",
    text="",
    passages=(
        schema.PromptPassage(
            "Talor Menvik",
            "Talor Menvik was born in Varnholt in 1812. Orin Dask worked as a poet. "
            "Talor Menvik worked as a painter. Talor Menvik created the Silver Harbor.",
        ),
        schema.PromptPassage(
            "Orin Dask", "Orin Dask died in Tarnis in 1890. Orin Dask won the Vesta Prize in 1860."
        ),
    ),
    answers=(),
)
EXAMPLE = world_lib.example_from_prompt(PROMPT)
BIRTH = "Talor Menvik was born in Varnholt in 1812"
JOB = "Talor Menvik worked as a painter"
WORK = "Talor Menvik created the Silver Harbor"
GOLD = f"{BIRTH}, and {JOB}. {WORK}."


def _errors(answer):
    """``[(error type, span text)]`` of the oracle's verdict."""
    verdict = oracle.annotate(EXAMPLE, answer)
    return [(c.error_type, answer[c.start : c.end]) for c in verdict.clauses if c.error_type]


def _feedback(answer):
    return oracle.feedback(EXAMPLE, oracle.annotate(EXAMPLE, answer))


def test_example_from_prompt():
    assert EXAMPLE.subject == "Talor Menvik"
    assert [f.attribute for f in EXAMPLE.required] == ["birth", "occupation", "work"]
    assert EXAMPLE.locations == ((1, 1), (1, 3), (1, 4))
    assert EXAMPLE.gold == GOLD


def test_clean_answer_has_no_errors():
    verdict = oracle.annotate(EXAMPLE, GOLD)
    assert _errors(GOLD) == [] and verdict.missing == () and verdict.score == 3.0
    assert _feedback(GOLD) == {"errors": [], "missing-info": [], "corrected-prediction": GOLD}
    # Clause order is free; the correction keeps the answer's order.
    reordered = f"{WORK}, and {JOB}. {BIRTH}."
    assert _errors(reordered) == [] and _feedback(reordered)["corrected-prediction"] == reordered


def test_irrelevant_fact_about_another_person():
    answer = f"{BIRTH}, and Orin Dask worked as a poet. {JOB}, and {WORK}."
    assert _errors(answer) == [("Irrelevant", "and Orin Dask worked as a poet")]
    feedback = _feedback(answer)
    start = answer.index("and Orin")
    assert feedback["errors"] == [{
        "error type": "Irrelevant", "start": start, "end": start + 30,
        "explanation": "about Orin Dask, not Talor Menvik",
    }]  # fmt: skip
    assert feedback["missing-info"] == [] and feedback["corrected-prediction"] == GOLD
    assert oracle.annotate(EXAMPLE, answer).score == 2.0


def test_redundant_repeated_clause():
    answer = f"{BIRTH}, and {JOB}. {WORK}, and {JOB}."
    assert _errors(answer) == [("Redundant", f"and {JOB}")]
    assert _feedback(answer)["corrected-prediction"] == GOLD
    # A repeated wrong or garbled clause is redundant too (its first copy carries the error).
    garbage = "the the the the the the"
    assert _errors(f"{garbage}, and {garbage}.") == [
        ("Incoherent", garbage), ("Redundant", f"and {garbage}")]  # fmt: skip


def test_wrong_grounding_contradicts_the_passage():
    answer = f"Talor Menvik was born in Tarnis in 1812, and {JOB}. {WORK}."
    assert _errors(answer) == [("Wrong-Grounding", "Talor Menvik was born in Tarnis in 1812")]
    feedback = _feedback(answer)
    assert feedback["errors"][0]["explanation"] == f"the passage says: {BIRTH}"
    # The correct birth fact is missing: it is added back at the end of the correction.
    assert feedback["missing-info"] == [
        {"error type": "Missing-Major-Auxiliary", "passage_id": 1, "sentence_id": [1]}]
    assert feedback["corrected-prediction"] == f"{JOB}, and {WORK}. {BIRTH}."
    # A value outside every vocabulary is still read as a (wrong) value.
    assert _errors(f"{WORK.replace('Silver', 'Zzyzx')}.")[0][0] == "Wrong-Grounding"


def test_unverifiable_attribute_not_in_the_passages():
    answer = f"{GOLD} Talor Menvik died in Tarnis in 1890."
    assert _errors(answer) == [("Unverifiable", "Talor Menvik died in Tarnis in 1890")]
    assert _feedback(answer)["corrected-prediction"] == GOLD


def test_missing_facts_point_at_passage_sentences():
    feedback = _feedback(f"{BIRTH}.")
    assert feedback["errors"] == []
    assert feedback["missing-info"] == [
        {"error type": "Missing-Answer", "passage_id": 1, "sentence_id": [3]},
        {"error type": "Missing-Major-Auxiliary", "passage_id": 1, "sentence_id": [4]},
    ]
    assert feedback["corrected-prediction"] == GOLD
    assert oracle.annotate(EXAMPLE, f"{BIRTH}.").score == 1.0


@pytest.mark.parametrize(
    "garbage, num_clauses",
    [("", 0), ("   ", 0), ("!!! ...", 0), ("the the the the the the", 1),
     ("Talor Menvik worked as", 1), ("ĠQuellin 1812 xx\n", 1),
     ("painter a as worked Menvik Talor. Talor Menvik, Talor Menvik", 3)],
)  # fmt: skip
def test_garbage_is_incoherent_and_everything_is_missing(garbage, num_clauses):
    verdict = oracle.annotate(EXAMPLE, garbage)
    assert [c.error_type for c in verdict.clauses] == ["Incoherent"] * min(num_clauses, 2) + [
        "Redundant"] * max(num_clauses - 2, 0)  # fmt: skip
    assert verdict.missing == (0, 1, 2) and verdict.correct == ()
    assert _feedback(garbage)["corrected-prediction"] == GOLD


def test_feedback_record_parses_and_prefers_higher_scores():
    predictions = [f"{BIRTH}.", GOLD, f"{GOLD} Talor Menvik died in Tarnis in 1890.", f"{BIRTH}."]
    raw = oracle.feedback_record(EXAMPLE, predictions)
    (record,) = schema.parse_feedback([raw], "synthetic")
    # Scores 1, 3, 2, 1 -> pairs (1,2) (1,3) (1,4) (2,3) (2,4) (3,4).
    assert record.preference == (2, 2, 0, 1, 1, 1)
    assert record.passages[0].sentences[2] == f"{JOB}."
    assert record.feedback.corrected_prediction == GOLD
    assert [m.error_type for m in record.feedback.missing_info] == [
        "Missing-Answer", "Missing-Major-Auxiliary"]  # fmt: skip
    with pytest.raises(ValueError, match="need 4 predictions"):
        oracle.feedback_record(EXAMPLE, predictions[:3])


def test_metrics_of_a_hand_made_set():
    answers = [GOLD, f"{BIRTH}.", f"{GOLD} Talor Menvik died in Tarnis in 1890.", "xx yy zz"]
    metrics = oracle.evaluate_answers([EXAMPLE] * 4, answers)
    assert metrics["error_rate/Missing"] == 0.5
    assert metrics["mean_count/Missing"] == (0 + 2 + 0 + 3) / 4
    assert metrics["error_rate/Unverifiable"] == 0.25
    assert metrics["error_rate/Incoherent"] == 0.25
    assert metrics["error_rate/Irrelevant"] == 0.0
    assert metrics["error_rate/any"] == 0.75
    # missing 0+2+0+3, unverifiable 1 (answer 3), incoherent 1 (answer 4)
    assert metrics["errors_per_answer"] == (5 + 1 + 1) / 4
    assert metrics["mean_score"] == (3 + 1 + 2 - 1) / 4
    assert metrics["fact_recall"] == 7 / 12
    assert metrics["mean_words"] == np.mean([len(a.split()) for a in answers])
    per_answer = oracle.answer_metrics(oracle.annotate(EXAMPLE, answers[2]))
    assert per_answer["has/Unverifiable"] == 1.0 and per_answer["count/Unverifiable"] == 1.0


NF_TYPES = {"Irrelevant", "Redundant", "Incoherent"}


@pytest.fixture(scope="module")
def generated():
    """Oracle feedback on four injected-error samples per example, parsed back."""
    world = world_lib.make_world(3)
    examples = world_lib.make_examples(world, 120, seed=4)
    rng = np.random.default_rng(5)
    predictions = [
        [demos_lib.make_demonstration(e, rng).answer for _ in range(4)] for e in examples
    ]
    raw = oracle.feedback_records(examples, predictions)
    return world, examples, schema.parse_feedback(raw, "synthetic")


def test_rm_builders_labels_follow_the_oracle(generated):
    _, examples, records = generated
    relevance = rb.build_relevance_examples(records)
    assert len(relevance) == len(records)
    for ex in relevance:
        verdict = oracle.annotate(examples[ex.record_index], ex.answer)
        # Every clause is one sub-sentence: R1 says NF-ERR exactly on the NF-ERR clauses.
        assert ex.labels == tuple(int(c.error_type in NF_TYPES) for c in verdict.clauses)
    factuality = rb.build_factuality_examples(records)
    assert sum(label == 1 for ex in factuality for label in ex.labels) > 20
    for ex in factuality:
        verdict = oracle.annotate(examples[ex.record_index], ex.answer)
        for (start, end), label in zip(ex.segments, ex.labels, strict=True):
            types = {c.error_type for c in verdict.clauses if start <= c.start < end}
            expected = 1 if types & schema.FACTUAL_ERROR_TYPES else (
                rb.IGNORE_LABEL if types & NF_TYPES else 0)
            assert label == expected


def test_rm_builders_preferences_follow_the_oracle(generated):
    _, examples, records = generated
    coverage = rb.build_coverage_records(records)
    assert len(coverage) == len(records)
    for c in coverage:
        example = examples[c.record_index]
        # Corrected predictions state every required fact: R3's info sentences are theirs.
        assert list(c.info_sentences) == sorted(example.locations)
        for prediction, covered in zip(records[c.record_index].predictions, c.coverage):
            verdict = oracle.annotate(example, prediction)
            recall = len(verdict.correct) / len(example.required)
            # String matching also credits near-copies (a wrong year, shuffled words).
            assert covered >= recall - 1e-9
            if not {"Wrong-Grounding", "Incoherent"} & {x.error_type for x in verdict.clauses}:
                assert covered == pytest.approx(recall)
    holistic = rb.build_holistic_pairs(records)
    assert len(holistic) > 3 * len(records)
    for pair in holistic:
        example = examples[pair.record_index]
        preferred = oracle.annotate(example, pair.preferred).score
        assert preferred > oracle.annotate(example, pair.other).score


def test_relevance_examples_tokenize_with_the_world_tokenizer(generated, tmp_path):
    world, _, records = generated
    tokenizer = world_lib.train_world_tokenizer(world, str(tmp_path / "tok"), vocab_size=1024)
    examples = rb.build_relevance_examples(records)
    arrays = rm_tokenize.tokenize_segment_examples(examples, tokenizer, 32, 96)
    assert arrays.num_segments_truncated == 0
    for row, ex in zip(arrays.labels, examples):
        assert row[row != rb.IGNORE_LABEL].tolist() == list(ex.labels)
