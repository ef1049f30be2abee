"""Reward-model training data from QA-Feedback records (shared/REFERENCE.md, rule by rule).

- R1 relevance: sub-sentences of ``prediction 1`` labelled NF-ERR (1) / O (0); input
  ``question: Q answer:`` + answer.
- R2 factuality: sentences labelled F-ERR (1) / O (0), or ignored (-100) when they hold only
  NF-ERR words; input question + passages + answer. Records whose every label is ignored
  are dropped.
- R3 completeness: the six preferences re-derived from passage-sentence coverage
  (``rm_coverage``); holistic: the human ``preference`` field. Both give pairs
  ``(preferred, other)`` over the same prompt; ties are left out (the loss skips them).

Segments and words are character spans of the answer, computed by ``fgjax.text`` with a
pluggable sentence ``splitter``; a segment's label is read at its last token
(``rm_tokenize``). Words are whitespace tokens; a word belongs to a segment when it starts
inside it, and is an error word when it overlaps an error span.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from fgjax import text
from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_coverage

IGNORE_LABEL = -100
LABEL_O = 0
LABEL_ERR = 1
MIN_NF_SPAN_WORDS = 5  # NF-ERR spans shorter than this are dropped (both R1 and R2)
ANSWER_MARKER = "answer:"
PASSAGE_SEPARATOR = "|"  # between passages in the policy prompt
DEFAULT_SPLITTER = "syntok"

Span = tuple[int, int]  # [start, end) characters
Splitter = str | text.SentenceSplitter  # a name registered in fgjax.text, or a callable


@dataclasses.dataclass(frozen=True)
class SegmentExample:
    """An R1 / R2 example: RM input ``[prompt ; answer]`` with one label per answer segment."""

    record_index: int  # position in the feedback file
    prompt: str  # RM prompt, ends with ANSWER_MARKER
    answer: str  # ``prediction 1`` verbatim
    segments: tuple[Span, ...]  # character spans into ``answer``, in order, no outer spaces
    labels: tuple[int, ...]  # per segment: LABEL_O, LABEL_ERR or IGNORE_LABEL


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """An R3 / holistic example: two answers to one prompt, the preferred one first."""

    record_index: int
    prompt: str
    preferred: str
    other: str
    prediction_indices: tuple[int, int]  # 0-based (preferred, other)


@dataclasses.dataclass(frozen=True)
class CoverageRecord:
    """R3 view of one record that has information sentences."""

    record_index: int
    info_sentences: tuple[rm_coverage.SentenceId, ...]  # sorted (passage_id, sentence_id)
    coverage: tuple[float, ...]  # per prediction
    preference: tuple[int, ...]  # re-derived, pairs schema.PREFERENCE_PAIRS


def rm_prompt(question: str, passages: Sequence[tuple[str, str]] = ()) -> str:
    """``question: Q [context: wikipage: T text: P | wikipage: ...] answer:``, normalised.

    ``passages`` are ``(title, text)`` pairs; none for R1. With passages this is the policy
    prompt format of ``{split}.json`` (passages joined by ``|``; 487 of the 500 dev feedback
    records rebuild their prompt's ``text`` exactly, the rest differ by a space where the
    feedback file split a passage into sentences), so reward models see at training time the
    input the reward path builds from policy prompts (``policy_rm_prompt``). The release's RM
    training files leave out the ``|`` that its RL-time inputs contain; fgjax keeps it in both.
    """
    words = ["question:", *question.split()]
    for i, (title, body) in enumerate(passages):
        words += ["context:" if i == 0 else PASSAGE_SEPARATOR, "wikipage:", *title.split()]
        words += ["text:", *body.split()]
    words.append(ANSWER_MARKER)
    return " ".join(words)


def policy_rm_prompt(prompt: schema.QAPrompt, with_passages: bool) -> str:
    """RM prompt for a policy prompt: R1 without passages, R2 / R3 / holistic with them."""
    if not with_passages:
        return rm_prompt(prompt.question)
    return " ".join(prompt.text.split()) + " " + ANSWER_MARKER


def feedback_passages(record: schema.FeedbackRecord) -> list[tuple[str, str]]:
    return [(p.title, " ".join(p.sentences)) for p in record.passages]


@functools.lru_cache(maxsize=16384)
def answer_segments(
    answer: str, level: str, splitter: Splitter = DEFAULT_SPLITTER
) -> tuple[Span, ...]:
    """Trimmed ``level`` ("sentence" / "subsentence") character spans of ``answer``.

    Memoised: the stats and the R1/R2 builders split the same answers; splitting is pure.
    """
    return tuple(text.segment_spans(answer, level, splitter))


def error_categories(answer: str, errors: Sequence[schema.ErrorSpan]) -> tuple[list, list]:
    """``(nf_spans, f_spans)`` after the length filter (NF-ERR spans of >= 5 words only)."""
    nf, f = [], []
    for e in errors:
        if e.is_factual:
            f.append((e.start, e.end))
        elif len(answer[e.start : e.end].split()) >= MIN_NF_SPAN_WORDS:
            nf.append((e.start, e.end))
    return nf, f


def _overlaps(span: Span, others: Sequence[Span]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


def segment_labels(
    answer: str,
    segments: Sequence[Span],
    errors: Sequence[schema.ErrorSpan],
    category: str,
) -> tuple[int, ...]:
    """Per-segment labels for ``category`` "NF-ERR" (R1) or "F-ERR" (R2)."""
    if category not in ("NF-ERR", "F-ERR"):
        raise ValueError(f"category must be 'NF-ERR' or 'F-ERR', got {category!r}")
    nf_spans, f_spans = error_categories(answer, errors)
    words = text.word_spans(answer)
    labels = []
    for seg_start, seg_end in segments:
        seg_words = [w for w in words if seg_start <= w[0] < seg_end]
        has_nf = any(_overlaps(w, nf_spans) for w in seg_words)
        has_f = any(_overlaps(w, f_spans) for w in seg_words)
        if category == "NF-ERR":
            labels.append(LABEL_ERR if has_nf else LABEL_O)
        elif has_f:
            labels.append(LABEL_ERR)
        else:
            # Annotation rule: a sentence with NF-ERR words carries no F-ERR verdict.
            labels.append(IGNORE_LABEL if has_nf else LABEL_O)
    return tuple(labels)


def _segment_examples(
    records: Sequence[schema.FeedbackRecord], category: str, splitter: Splitter
) -> list[SegmentExample]:
    level = "subsentence" if category == "NF-ERR" else "sentence"
    examples = []
    for index, record in enumerate(records):
        answer = record.predictions[0]
        segments = answer_segments(answer, level, splitter)
        labels = segment_labels(answer, segments, record.feedback.errors, category)
        if all(label == IGNORE_LABEL for label in labels):
            continue  # nothing to learn from (also: an empty answer)
        passages = feedback_passages(record) if category == "F-ERR" else ()
        prompt = rm_prompt(record.question, passages)
        examples.append(SegmentExample(index, prompt, answer, tuple(segments), labels))
    return examples


def build_relevance_examples(
    records: Sequence[schema.FeedbackRecord], splitter: Splitter = DEFAULT_SPLITTER
) -> list[SegmentExample]:
    """R1: sub-sentence NF-ERR labels, prompt without passages."""
    return _segment_examples(records, "NF-ERR", splitter)


def build_factuality_examples(
    records: Sequence[schema.FeedbackRecord], splitter: Splitter = DEFAULT_SPLITTER
) -> list[SegmentExample]:
    """R2: sentence F-ERR labels (NF-ERR-only sentences ignored), prompt with passages."""
    return _segment_examples(records, "F-ERR", splitter)


def subsentence_texts(answer: str, splitter: Splitter = DEFAULT_SPLITTER) -> list[str]:
    """Sub-sentences of the whitespace-normalised ``answer`` (R3 matching units)."""
    normalized = " ".join(answer.split())
    return [normalized[a:b] for a, b in answer_segments(normalized, "subsentence", splitter)]


def coverage_record(
    index: int, record: schema.FeedbackRecord, splitter: Splitter = DEFAULT_SPLITTER
) -> CoverageRecord | None:
    """R3 coverage and re-derived preferences of one record; None without info sentences."""
    sentences = rm_coverage.PassageSentences(record.passages)
    corrected = subsentence_texts(record.feedback.corrected_prediction, splitter)
    info = rm_coverage.information_sentences(record, corrected, sentences)
    if not info:
        return None
    scores = tuple(
        rm_coverage.coverage(subsentence_texts(p, splitter), info, sentences)
        for p in record.predictions
    )
    preference = rm_coverage.preferences_from_scores(scores)
    return CoverageRecord(index, tuple(sorted(info)), scores, preference)


def build_coverage_records(
    records: Sequence[schema.FeedbackRecord], splitter: Splitter = DEFAULT_SPLITTER
) -> list[CoverageRecord]:
    """R3 records (those without information sentences are skipped)."""
    built = (coverage_record(i, record, splitter) for i, record in enumerate(records))
    return [c for c in built if c is not None]


def preference_pairs(
    index: int, record: schema.FeedbackRecord, preference: Sequence[int]
) -> list[PreferencePair]:
    """Non-tie pairs of one record, preferred answer first."""
    prompt = rm_prompt(record.question, feedback_passages(record))
    pairs = []
    for (i, j), value in zip(schema.PREFERENCE_PAIRS, preference, strict=True):
        if value == 0:
            continue
        good, bad = (i, j) if value == 1 else (j, i)
        preds = record.predictions
        pairs.append(PreferencePair(index, prompt, preds[good], preds[bad], (good, bad)))
    return pairs


def build_completeness_pairs(
    records: Sequence[schema.FeedbackRecord], coverage: Sequence[CoverageRecord]
) -> list[PreferencePair]:
    """R3 pairs from ``build_coverage_records`` output."""
    return [
        pair
        for c in coverage
        for pair in preference_pairs(c.record_index, records[c.record_index], c.preference)
    ]


def build_holistic_pairs(records: Sequence[schema.FeedbackRecord]) -> list[PreferencePair]:
    """Holistic baseline: pairs from the human ``preference`` field."""
    return [
        pair
        for index, record in enumerate(records)
        for pair in preference_pairs(index, record, record.preference)
    ]
