"""QA-Feedback records: typed frozen dataclasses and their validating parsers.

Two files per split (schema in shared/REFERENCE.md):
- ``{split}.json``: policy prompts (``question``, ``text``, ``passages``, ``answer``);
- ``{split}_feedback.json``: four predictions, fine-grained feedback on ``prediction 1``
  and six pairwise preferences.

Every record is checked before anything is returned; the first problem raises
``QAFeedbackFormatError`` naming the file, the record index and the field.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable
from typing import Any, TypeVar

from fgjax.errors import UserError

# Error types of the span feedback on ``prediction 1``.
ERROR_TYPES = ("Irrelevant", "Redundant", "Incoherent", "Wrong-Grounding", "Unverifiable")
# F-ERR (factuality, R2); every other error type is NF-ERR (relevance, R1).
FACTUAL_ERROR_TYPES = frozenset({"Wrong-Grounding", "Unverifiable"})
MISSING_INFO_TYPES = ("Missing-Answer", "Missing-Major-Auxiliary", "Missing-Minor-Auxiliary")
NUM_PREDICTIONS = 4
# Prediction index pairs (0-based) behind the six preference values, in file order.
PREFERENCE_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
# Preference values: 0 = tie, 1 = first of the pair better, 2 = second better.
PREFERENCE_VALUES = (0, 1, 2)


class QAFeedbackFormatError(UserError, ValueError):
    """A QA-Feedback file or record does not follow the schema.

    ``index`` is the record's position in the file's top-level list (None for whole-file
    problems); ``field`` is a dotted path such as ``feedback.errors[2].start``.
    """

    def __init__(self, path: str, index: int | None, field: str | None, problem: str):
        self.path, self.index, self.field, self.problem = path, index, field, problem
        where = [path]
        if index is not None:
            where.append(f"record {index}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join(where) + f": {problem}")


@dataclasses.dataclass(frozen=True)
class PromptPassage:
    title: str | None  # the Wikipedia page (``wikipage`` in the release, ``title`` elsewhere)
    content: str


@dataclasses.dataclass(frozen=True)
class QAPrompt:
    """One record of ``{split}.json``."""

    question: str
    text: str  # the full policy prompt "question: ... context: wikipage: ... text: ..."
    passages: tuple[PromptPassage, ...]
    answers: tuple[str, ...]  # reference answers (ROUGE targets)


@dataclasses.dataclass(frozen=True)
class FeedbackPassage:
    title: str
    sentences: tuple[str, ...]  # sentence k (1-based in the feedback) is sentences[k - 1]


@dataclasses.dataclass(frozen=True)
class ErrorSpan:
    error_type: str  # one of ERROR_TYPES
    start: int  # character offsets into ``prediction 1``, start < end
    end: int
    explanation: str

    @property
    def is_factual(self) -> bool:
        return self.error_type in FACTUAL_ERROR_TYPES


@dataclasses.dataclass(frozen=True)
class MissingInfo:
    error_type: str  # one of MISSING_INFO_TYPES
    passage_id: int  # 1-based into the record's passages
    # 1-based into the passage's sentences; 0 names the title line (3 entries in dev do so).
    sentence_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Feedback:
    errors: tuple[ErrorSpan, ...]
    missing_info: tuple[MissingInfo, ...]
    corrected_prediction: str


@dataclasses.dataclass(frozen=True)
class FeedbackRecord:
    """One record of ``{split}_feedback.json``."""

    question: str
    passages: tuple[FeedbackPassage, ...]
    gold: str
    predictions: tuple[str, str, str, str]  # "prediction 1" .. "prediction 4"
    feedback: Feedback  # about predictions[0] only
    preference: tuple[int, ...]  # six values in PREFERENCE_VALUES, pairs PREFERENCE_PAIRS


class _Fields:
    """Typed access to one JSON object; every failure names file, record and field path."""

    def __init__(self, path: str, index: int, value: Any, prefix: str = ""):
        self.path, self.index, self.prefix = path, index, prefix
        if not isinstance(value, dict):
            self.fail("", f"must be an object, got {_type_name(value)}")
        self.obj = value

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}" if key else self.prefix.rstrip(".")

    def fail(self, key: str, problem: str) -> None:
        raise QAFeedbackFormatError(self.path, self.index, self.name(key) or "<record>", problem)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.obj:
            if default is ...:
                self.fail(key, "missing")
            return default
        return self.check(key, self.obj[key], kind)

    def check(self, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        # bool is an int subclass; JSON true/false is never a valid offset or id.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            expected = " or ".join(k.__name__ for k in kinds)
            self.fail(key, f"must be {expected}, got {_type_name(value)}")
        return value

    def one_of(self, key: str, value: Any, allowed: tuple[Any, ...]) -> Any:
        if value not in allowed:
            self.fail(key, f"unknown value {value!r}; allowed: {list(allowed)}")
        return value

    def items(self, key: str, kind: type) -> list[Any]:
        values = self.get(key, list)
        for i, value in enumerate(values):
            self.check(f"{key}[{i}]", value, kind)
        return values

    def child(self, key: str, value: Any) -> _Fields:
        return _Fields(self.path, self.index, value, prefix=self.name(key) + ".")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _parse_prompt(fields: _Fields) -> QAPrompt:
    question, text = fields.get("question", str), fields.get("text", str)
    passages = []
    for i, raw in enumerate(fields.get("passages", list)):
        passage = fields.child(f"passages[{i}]", raw)
        title = passage.get("wikipage", str, default=None)
        if title is None:
            title = passage.get("title", str, default=None)
        passages.append(PromptPassage(title=title, content=passage.get("content", str)))
    return QAPrompt(
        question=question,
        text=text,
        passages=tuple(passages),
        answers=tuple(fields.items("answer", str)),
    )


def _parse_feedback_record(fields: _Fields) -> FeedbackRecord:
    question = fields.get("question", str)
    passages = []
    for i, raw in enumerate(fields.get("passages", list)):
        key = f"passages[{i}]"
        lines = fields.check(key, raw, list)
        for j, line in enumerate(lines):
            fields.check(f"{key}[{j}]", line, str)
        if not lines:
            fields.fail(key, "must hold [title, sentence_1, ...], got an empty list")
        passages.append(FeedbackPassage(title=lines[0], sentences=tuple(lines[1:])))

    gold = fields.get("gold", str)
    predictions = tuple(fields.get(f"prediction {k}", str) for k in range(1, NUM_PREDICTIONS + 1))
    feedback = fields.child("feedback", fields.get("feedback", dict))
    errors = []
    for i, raw in enumerate(feedback.get("errors", list)):
        span = feedback.child(f"errors[{i}]", raw)
        error_type = span.one_of("error type", span.get("error type", str), ERROR_TYPES)
        start, end = span.get("start", int), span.get("end", int)
        if not 0 <= start < end <= len(predictions[0]):
            span.fail(
                "start",
                f"span [{start}, {end}) must satisfy 0 <= start < end <= "
                f"len(prediction 1) = {len(predictions[0])}",
            )
        explanation = span.get("explanation", str, default="")
        errors.append(ErrorSpan(error_type, start, end, explanation))

    missing = []
    for i, raw in enumerate(feedback.get("missing-info", list)):
        entry = feedback.child(f"missing-info[{i}]", raw)
        error_type = entry.one_of("error type", entry.get("error type", str), MISSING_INFO_TYPES)
        passage_id = entry.get("passage_id", int)
        sentence_ids = entry.items("sentence_id", int)
        if not 1 <= passage_id <= len(passages):
            entry.fail("passage_id", f"{passage_id} out of range 1..{len(passages)}")
        num_sentences = len(passages[passage_id - 1].sentences)
        for j, sentence_id in enumerate(sentence_ids):
            if not 0 <= sentence_id <= num_sentences:
                entry.fail(
                    f"sentence_id[{j}]",
                    f"{sentence_id} out of range 0..{num_sentences} for passage {passage_id}",
                )
        missing.append(MissingInfo(error_type, passage_id, tuple(sentence_ids)))

    preference = fields.items("preference", int)
    if len(preference) != len(PREFERENCE_PAIRS):
        expected = len(PREFERENCE_PAIRS)
        fields.fail("preference", f"must hold {expected} values, got {len(preference)}")
    for i, value in enumerate(preference):
        fields.one_of(f"preference[{i}]", value, PREFERENCE_VALUES)

    return FeedbackRecord(
        question=question,
        passages=tuple(passages),
        gold=gold,
        predictions=predictions,  # type: ignore[arg-type]
        feedback=Feedback(
            errors=tuple(errors),
            missing_info=tuple(missing),
            corrected_prediction=feedback.get("corrected-prediction", str),
        ),
        preference=tuple(preference),
    )


T = TypeVar("T")


def parse_records(
    raw_records: Any, path: str, parse: Callable[[_Fields], T]
) -> tuple[T, ...]:
    """Validates and converts a decoded top-level JSON value; raises on the first bad record."""
    if not isinstance(raw_records, list):
        raise QAFeedbackFormatError(
            path, None, None, f"top level must be a list of records, got {_type_name(raw_records)}"
        )
    return tuple(parse(_Fields(path, i, raw)) for i, raw in enumerate(raw_records))


def decode_json_text(text: str, where: str) -> Any:
    """Decodes one JSON document; empty or invalid text is a format error naming ``where``."""
    if not text.strip():
        raise QAFeedbackFormatError(where, None, None, "file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        problem = f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        raise QAFeedbackFormatError(where, None, None, problem) from None


def read_json_file(path: str | pathlib.Path) -> Any:
    """Decodes a whole JSON file; an unreadable, empty or non-JSON file is a format error."""
    path = pathlib.Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QAFeedbackFormatError(str(path), None, None, "file not found") from None
    except UnicodeDecodeError as err:
        raise QAFeedbackFormatError(str(path), None, None, f"not UTF-8 text ({err})") from None
    return decode_json_text(text, str(path))


def parse_prompts(raw_records: Any, path: str) -> tuple[QAPrompt, ...]:
    return parse_records(raw_records, path, _parse_prompt)


def parse_feedback(raw_records: Any, path: str) -> tuple[FeedbackRecord, ...]:
    return parse_records(raw_records, path, _parse_feedback_record)


def load_prompts(path: str | pathlib.Path) -> tuple[QAPrompt, ...]:
    """Reads and validates a ``{split}.json`` prompt file."""
    return parse_prompts(read_json_file(path), str(path))


def load_feedback(path: str | pathlib.Path) -> tuple[FeedbackRecord, ...]:
    """Reads and validates a ``{split}_feedback.json`` file."""
    return parse_feedback(read_json_file(path), str(path))

