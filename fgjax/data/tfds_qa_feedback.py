"""TFDS builder for QA-Feedback over local release files (no TensorFlow needed).

Written as ``array_record`` and read back with ``builder.as_data_source()`` /
``tfds.data_source``; ``tfds.load`` needs TensorFlow and refuses array_record anyway.
Two configs: ``prompts`` (``{split}.json``) and ``feedback`` (``{split}_feedback.json``).

Nested lists are stored flat with row lengths (ragged features need TensorFlow to
serialise): passage sentences as ``passage_sentences`` + ``passage_num_sentences``, missing
info sentence ids as ``missing_info_sentence_ids`` + ``missing_info/num_sentence_ids``.
Records come back in key-hash order, not file order: each carries its file ``index``, and
``read_records`` sorts by it and rebuilds the loader's dataclasses.

Usage::

    builder = build_qa_feedback_tfds(source_dir="../shared/data/qa_feedback",
                                     data_dir="/tmp/tfds", config="feedback")
    dev = builder.as_data_source()["dev"]          # random access, dict per record
    records = read_records(dev, "feedback")        # tuple[FeedbackRecord, ...] in file order
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from fgjax.data import qa_feedback_files as files
from fgjax.data import qa_feedback_schema as schema

CONFIGS = ("prompts", "feedback")

_text = tfds.features.Text
_texts = lambda: tfds.features.Sequence(tfds.features.Text())  # noqa: E731


def _features(config: str) -> tfds.features.FeaturesDict:
    if config == "prompts":
        return tfds.features.FeaturesDict(
            {
                "index": np.int32,
                "question": _text(),
                "text": _text(),
                "passage_titles": _texts(),  # "" where the record has no title
                "passage_contents": _texts(),
                "answers": _texts(),
            }
        )
    return tfds.features.FeaturesDict(
        {
            "index": np.int32,
            "question": _text(),
            "gold": _text(),
            "predictions": tfds.features.Sequence(_text(), length=schema.NUM_PREDICTIONS),
            "passage_titles": _texts(),
            "passage_num_sentences": tfds.features.Sequence(np.int32),
            "passage_sentences": _texts(),
            "errors": tfds.features.Sequence(
                {"error_type": _text(), "start": np.int32, "end": np.int32, "explanation": _text()}
            ),
            "missing_info": tfds.features.Sequence(
                {"error_type": _text(), "passage_id": np.int32, "num_sentence_ids": np.int32}
            ),
            "missing_info_sentence_ids": tfds.features.Sequence(np.int32),
            "corrected_prediction": _text(),
            "preference": tfds.features.Tensor(
                shape=(len(schema.PREFERENCE_PAIRS),), dtype=np.int32
            ),
        }
    )


def prompt_to_example(index: int, prompt: schema.QAPrompt) -> dict[str, Any]:
    return {
        "index": index,
        "question": prompt.question,
        "text": prompt.text,
        "passage_titles": [p.title or "" for p in prompt.passages],
        "passage_contents": [p.content for p in prompt.passages],
        "answers": list(prompt.answers),
    }


def feedback_to_example(index: int, record: schema.FeedbackRecord) -> dict[str, Any]:
    feedback = record.feedback
    return {
        "index": index,
        "question": record.question,
        "gold": record.gold,
        "predictions": list(record.predictions),
        "passage_titles": [p.title for p in record.passages],
        "passage_num_sentences": [len(p.sentences) for p in record.passages],
        "passage_sentences": [s for p in record.passages for s in p.sentences],
        "errors": [
            {"error_type": e.error_type, "start": e.start, "end": e.end,
             "explanation": e.explanation}
            for e in feedback.errors
        ],
        "missing_info": [
            {"error_type": m.error_type, "passage_id": m.passage_id,
             "num_sentence_ids": len(m.sentence_ids)}
            for m in feedback.missing_info
        ],
        "missing_info_sentence_ids": [s for m in feedback.missing_info for s in m.sentence_ids],
        "corrected_prediction": feedback.corrected_prediction,
        "preference": list(record.preference),
    }


def _str(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _strs(values: Sequence[bytes | str]) -> tuple[str, ...]:
    return tuple(_str(v) for v in values)


def _ints(values: Sequence[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _split_rows(flat: Sequence[Any], lengths: Sequence[int]) -> list[Sequence[Any]]:
    bounds = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
    if bounds[-1] != len(flat):
        raise ValueError(f"row lengths sum to {bounds[-1]} but {len(flat)} values are stored")
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def example_to_prompt(example: dict[str, Any]) -> schema.QAPrompt:
    passages = tuple(
        schema.PromptPassage(title=_str(t) or None, content=_str(c))
        for t, c in zip(example["passage_titles"], example["passage_contents"], strict=True)
    )
    return schema.QAPrompt(
        question=_str(example["question"]),
        text=_str(example["text"]),
        passages=passages,
        answers=_strs(example["answers"]),
    )


def example_to_feedback(example: dict[str, Any]) -> schema.FeedbackRecord:
    sentences = _split_rows(example["passage_sentences"], example["passage_num_sentences"])
    passages = tuple(
        schema.FeedbackPassage(title=_str(title), sentences=_strs(rows))
        for title, rows in zip(example["passage_titles"], sentences, strict=True)
    )
    errors = example["errors"]
    missing = example["missing_info"]
    sentence_ids = _split_rows(example["missing_info_sentence_ids"], missing["num_sentence_ids"])
    return schema.FeedbackRecord(
        question=_str(example["question"]),
        passages=passages,
        gold=_str(example["gold"]),
        predictions=_strs(example["predictions"]),  # type: ignore[arg-type]
        feedback=schema.Feedback(
            errors=tuple(
                schema.ErrorSpan(_str(t), int(s), int(e), _str(x))
                for t, s, e, x in zip(
                    errors["error_type"], errors["start"], errors["end"], errors["explanation"],
                    strict=True,
                )
            ),
            missing_info=tuple(
                schema.MissingInfo(_str(t), int(p), _ints(ids))
                for t, p, ids in zip(
                    missing["error_type"], missing["passage_id"], sentence_ids, strict=True
                )
            ),
            corrected_prediction=_str(example["corrected_prediction"]),
        ),
        preference=_ints(example["preference"]),
    )


class QaFeedback(tfds.core.GeneratorBasedBuilder):
    """QA-Feedback (Wu et al. 2023) from local copies of the release's JSON files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Prompts and fine-grained feedback files of the public release."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="prompts", description="{split}.json policy prompts"),
        tfds.core.BuilderConfig(name="feedback", description="{split}_feedback.json feedback"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the release's {split}.json / {split}_feedback.json files in the manual dir "
        "(fgjax.data.qa_feedback_files.download fetches them)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        # dataset_info_from_configs() crashes for builders defined outside a dataset folder.
        return tfds.core.DatasetInfo(
            builder=self,
            description="QA-Feedback: long-form QA with fine-grained human feedback.",
            features=_features(self.builder_config.name),
            homepage="https://github.com/allenai/FineGrainedRLHF",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        source = pathlib.Path(dl_manager.manual_dir)
        config = self.builder_config.name
        if config == "prompts":
            paths = {s: files.prompts_path(source, s) for s in files.PROMPT_SPLITS}
        else:
            paths = {s: files.feedback_path(source, s) for s in files.FEEDBACK_SPLITS}
        present = {split: path for split, path in paths.items() if path.is_file()}
        if not present:
            names = sorted(p.name for p in paths.values())
            raise FileNotFoundError(f"no QA-Feedback {config} file in {source}; expected {names}")
        return {split: self._generate_examples(path) for split, path in present.items()}

    def _generate_examples(self, path: pathlib.Path) -> Iterator[tuple[int, dict[str, Any]]]:
        # The whole file is validated before the first example is yielded.
        if self.builder_config.name == "prompts":
            for index, prompt in enumerate(schema.load_prompts(path)):
                yield index, prompt_to_example(index, prompt)
        else:
            for index, record in enumerate(schema.load_feedback(path)):
                yield index, feedback_to_example(index, record)


def build_qa_feedback_tfds(
    source_dir: str | os.PathLike, data_dir: str | os.PathLike, config: str = "feedback"
) -> QaFeedback:
    """Prepares (once) the array_record dataset of ``config`` from the files in ``source_dir``."""
    if config not in CONFIGS:
        raise ValueError(f"unknown QA-Feedback TFDS config {config!r}; known: {list(CONFIGS)}")
    builder = QaFeedback(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(source_dir))
    )
    return builder


def read_records(data_source: Sequence[dict[str, Any]], config: str) -> tuple[Any, ...]:
    """All records of one split's data source, in file order, as loader dataclasses."""
    decode = example_to_prompt if config == "prompts" else example_to_feedback
    examples = sorted((data_source[i] for i in range(len(data_source))), key=lambda e: e["index"])
    return tuple(decode(example) for example in examples)
