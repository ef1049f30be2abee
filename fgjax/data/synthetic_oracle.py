"""Exact oracle for the synthetic QA world: QA-Feedback annotations, preferences, metrics.

An answer is cut into *clauses* at ``.`` ``,`` ``;`` ``!`` ``?`` (a leading "and" stays in its
clause). Each clause gets at most one error, checked in this order:

1. ``Redundant``: the same text (whitespace and case folded, connective dropped) or the same
   fact as an earlier clause;
2. ``Incoherent``: fits no clause template (garbage, fragments, shuffled words);
3. ``Irrelevant``: a fact about anyone but the person asked about;
4. ``Unverifiable``: an attribute of that person that the passages do not state;
5. ``Wrong-Grounding``: a stated attribute with a value other than the passage's;
6. otherwise the clause states a required fact correctly.

Error spans are the clauses' character ranges ``[start, end)`` in the answer, punctuation
excluded. A required fact not stated correctly is *missing*; its entry points at the passage
sentence holding it, ``Missing-Answer`` for the occupation (what "who was X" asks for) and
``Missing-Major-Auxiliary`` for the rest. The corrected prediction keeps the correct clauses
in answer order and appends the missing facts in canonical order.

Score (for preferences): ``#correct required facts - sum of ERROR_PENALTIES over the error
clauses``. ``set_metrics`` reports, per error type and for "Missing", the share of answers with
at least one such error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_coverage
from fgjax.data import synthetic_world as world_lib
from fgjax.data.synthetic_world import Fact, SyntheticExample

MISSING = "Missing"  # metric name for answers lacking a required fact
METRIC_TYPES = (*schema.ERROR_TYPES, MISSING)
ERROR_PENALTIES: Mapping[str, float] = {t: 1.0 for t in schema.ERROR_TYPES}
ANSWER_ATTRIBUTE = "occupation"  # its absence is Missing-Answer, others Missing-Major-Auxiliary

_CLAUSE = re.compile(r"[^.,;!?]+")
_CONNECTIVE = re.compile(rf"^{world_lib.CONNECTIVE}\s+", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class ClauseVerdict:
    start: int  # character range of the clause in the answer
    end: int
    fact: Fact | None  # None when the clause fits no template
    error_type: str | None  # one of schema.ERROR_TYPES, None for a correct required fact
    explanation: str


@dataclasses.dataclass(frozen=True)
class AnswerVerdict:
    answer: str
    clauses: tuple[ClauseVerdict, ...]
    correct: tuple[Fact, ...]  # required facts stated correctly, in answer order
    missing: tuple[int, ...]  # indices into example.required

    def error_count(self, error_type: str) -> int:
        if error_type == MISSING:
            return len(self.missing)
        return sum(c.error_type == error_type for c in self.clauses)

    @property
    def score(self) -> float:
        penalty = sum(ERROR_PENALTIES[c.error_type] for c in self.clauses if c.error_type)
        return len(self.correct) - penalty

    @property
    def num_words(self) -> int:
        return len(self.answer.split())


def clause_spans(answer: str) -> list[tuple[int, int]]:
    """Trimmed character ranges between ``.,;!?`` characters (no empty clauses)."""
    spans = []
    for match in _CLAUSE.finditer(answer):
        piece = match.group()
        if piece.strip():
            start = match.start() + len(piece) - len(piece.lstrip())
            spans.append((start, match.end() - (len(piece) - len(piece.rstrip()))))
    return spans


def _normalized(clause: str) -> str:
    return " ".join(_CONNECTIVE.sub("", clause.strip()).lower().split())


def _judge(example: SyntheticExample, fact: Fact) -> tuple[str | None, str]:
    if fact.subject != example.subject:
        return "Irrelevant", f"about {fact.subject}, not {example.subject}"
    stated = example.stated_fact(fact.attribute)
    if stated is None:
        return "Unverifiable", f"the passages do not state the {fact.attribute} of {fact.subject}"
    if stated.values != fact.values:
        return "Wrong-Grounding", f"the passage says: {stated.clause()}"
    return None, ""


def annotate(example: SyntheticExample, answer: str) -> AnswerVerdict:
    """Verdict on every clause of ``answer`` and the required facts it misses."""
    verdicts, seen_texts, seen_facts, correct = [], set(), set(), []
    for start, end in clause_spans(answer):
        clause = answer[start:end]
        text = _normalized(clause)
        fact = world_lib.parse_clause(clause)
        if text in seen_texts or (fact is not None and fact in seen_facts):
            error, why = "Redundant", "repeats an earlier clause"
        elif fact is None:
            error, why = "Incoherent", "not a well-formed statement"
        else:
            error, why = _judge(example, fact)
            if error is None:
                correct.append(fact)
        seen_texts.add(text)
        if fact is not None:
            seen_facts.add(fact)
        verdicts.append(ClauseVerdict(start, end, fact, error, why))
    stated = set(correct)
    missing = tuple(k for k, f in enumerate(example.required) if f not in stated)
    return AnswerVerdict(answer, tuple(verdicts), tuple(correct), missing)


def corrected_prediction(example: SyntheticExample, verdict: AnswerVerdict) -> str:
    """The answer's correct clauses, then its missing facts, rendered as an answer."""
    facts = [*verdict.correct, *(example.required[k] for k in verdict.missing)]
    return world_lib.render_answer([f.clause() for f in facts])


def feedback(example: SyntheticExample, verdict: AnswerVerdict) -> dict:
    """The ``feedback`` object of a QA-Feedback record (errors, missing-info, correction)."""
    errors = [
        {"error type": c.error_type, "start": c.start, "end": c.end, "explanation": c.explanation}
        for c in verdict.clauses
        if c.error_type is not None
    ]
    missing = []
    for k in verdict.missing:
        fact = example.required[k]
        passage_id, sentence_id = example.locations[k]
        kind = "Missing-Answer" if fact.attribute == ANSWER_ATTRIBUTE else "Missing-Major-Auxiliary"
        missing.append({"error type": kind, "passage_id": passage_id, "sentence_id": [sentence_id]})
    return {
        "errors": errors,
        "missing-info": missing,
        "corrected-prediction": corrected_prediction(example, verdict),
    }


def feedback_record(example: SyntheticExample, predictions: Sequence[str]) -> dict:
    """A JSON-able ``{split}_feedback.json`` record: feedback on ``predictions[0]`` and the six
    preferences from the oracle scores of the four predictions (equal scores tie)."""
    if len(predictions) != schema.NUM_PREDICTIONS:
        raise ValueError(f"need {schema.NUM_PREDICTIONS} predictions, got {len(predictions)}")
    verdicts = [annotate(example, p) for p in predictions]
    record = {
        "question": example.question,
        "passages": example.feedback_passages(),
        "gold": example.gold,
    }
    record.update({f"prediction {k + 1}": p for k, p in enumerate(predictions)})
    record["feedback"] = feedback(example, verdicts[0])
    scores = [v.score for v in verdicts]
    record["preference"] = list(rm_coverage.preferences_from_scores(scores))
    return record


def feedback_records(
    examples: Sequence[SyntheticExample], predictions: Sequence[Sequence[str]]
) -> list[dict]:
    """``feedback_record`` per example; ``predictions[i]`` are example i's four samples."""
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} prediction lists")
    return [feedback_record(e, p) for e, p in zip(examples, predictions)]


def answer_metrics(verdict: AnswerVerdict) -> dict[str, float]:
    """Per answer: ``has/<type>`` (0/1), ``count/<type>``, ``score``, ``num_words``."""
    metrics: dict[str, float] = {}
    for error_type in METRIC_TYPES:
        count = verdict.error_count(error_type)
        metrics[f"has/{error_type}"] = float(count > 0)
        metrics[f"count/{error_type}"] = float(count)
    metrics["score"] = verdict.score
    metrics["num_words"] = float(verdict.num_words)
    return metrics


def set_metrics(verdicts: Sequence[AnswerVerdict]) -> dict[str, float]:
    """Over a set of answers: ``error_rate/<type>`` (share with >= 1 such error),
    ``error_rate/any`` (share with any error or missing fact), ``mean_count/<type>``,
    ``errors_per_answer`` (their sum),
    ``mean_score``, ``mean_words``, ``fact_recall`` (correct / required facts)."""
    if not verdicts:
        raise ValueError("set_metrics needs at least one verdict")
    rows = [answer_metrics(v) for v in verdicts]
    metrics = {}
    for error_type in METRIC_TYPES:
        has = [r[f"has/{error_type}"] for r in rows]
        counts = [r[f"count/{error_type}"] for r in rows]
        metrics[f"error_rate/{error_type}"] = float(np.mean(has))
        metrics[f"mean_count/{error_type}"] = float(np.mean(counts))
    any_error = [max(r[f"has/{t}"] for t in METRIC_TYPES) for r in rows]
    metrics["error_rate/any"] = float(np.mean(any_error))
    # Errors of every type plus missing facts, per answer: falls with each error fixed, where
    # error_rate/any stays at 1 while one fact is still missing.
    metrics["errors_per_answer"] = float(sum(metrics[f"mean_count/{t}"] for t in METRIC_TYPES))
    metrics["mean_score"] = float(np.mean([r["score"] for r in rows]))
    metrics["mean_words"] = float(np.mean([r["num_words"] for r in rows]))
    num_required = sum(len(v.correct) + len(v.missing) for v in verdicts)
    metrics["fact_recall"] = sum(len(v.correct) for v in verdicts) / num_required
    return metrics


def evaluate_answers(
    examples: Sequence[SyntheticExample], answers: Sequence[str]
) -> dict[str, float]:
    """``set_metrics`` of one answer per example."""
    if len(examples) != len(answers):
        raise ValueError(f"{len(examples)} examples but {len(answers)} answers")
    return set_metrics([annotate(e, a) for e, a in zip(examples, answers)])
