"""Token arrays of the RM builders: [prompt (left-padded) ; answer + eos (right-padded)]."""

import numpy as np
import pytest

from fgjax import text
from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_builders as rb
from fgjax.data import rm_tokenize as rt
from fgjax.tokenizers import train_tokenizer

ANSWERS = [
    "The museum, founded in the year 1793, holds art, many old paintings and fine sculptures "
    "from Europe. It is in Paris. It was a royal palace before the revolution of the year 1789.",
    "Paris is the capital of France, with an estimated two million residents. It is old.",
]
CORPUS = ANSWERS + ["question: context: wikipage: text: answer: | Louvre museum Paris"] * 3


@pytest.fixture(scope="module", params=["bpe", "sentencepiece"])
def tokenizer(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / request.param
    return train_tokenizer(CORPUS * 20, request.param, 300, str(path))


def _examples() -> list[rb.SegmentExample]:
    out = []
    for i, answer in enumerate(ANSWERS):
        segments = rb.answer_segments(answer, "subsentence")
        labels = tuple([1, rb.IGNORE_LABEL] + [0] * (len(segments) - 2))
        out.append(rb.SegmentExample(i, "question: Where is it? answer:", answer, segments, labels))
    return out


def test_layout_and_segment_end_labels(tokenizer):
    p, a = 32, 128
    examples = _examples()
    batch = rt.tokenize_segment_examples(examples, tokenizer, p, a)
    assert batch.input_ids.shape == batch.labels.shape == (2, p + a)
    assert batch.input_ids.dtype == batch.labels.dtype == np.int32
    assert batch.prompt_len == p and batch.num_segments_truncated == 0
    prompt_ids = tokenizer("question: Where is it?", add_special_tokens=False)["input_ids"]
    prompt_ids += tokenizer(" answer:", add_special_tokens=False)["input_ids"]
    for row, example in enumerate(examples):
        ids, mask, labels = batch.input_ids[row], batch.attention_mask[row], batch.labels[row]
        # Prompt flush right in [0, P), answer from column P on, then padding.
        np.testing.assert_array_equal(ids[p - len(prompt_ids) : p], prompt_ids)
        assert mask[: p - len(prompt_ids)].sum() == 0 and mask[p - len(prompt_ids) : p].all()
        encoded = tokenizer(example.answer, add_special_tokens=False, return_offsets_mapping=True)
        n = len(encoded["input_ids"])
        np.testing.assert_array_equal(ids[p : p + n], encoded["input_ids"])
        assert ids[p + n] == tokenizer.eos_token_id and mask[p : p + n + 1].all()
        assert mask[p + n + 1 :].sum() == 0 and (ids[p + n + 1 :] == tokenizer.pad_token_id).all()
        # Labels only at segment ends of labelled segments; the last segment ends at eos.
        ends = text.segment_end_token_indices(encoded["offset_mapping"], example.segments, n + 1)
        assert ends[-1] == n
        for (_, end), token in zip(example.segments, ends[:-1]):
            token_start, token_end = encoded["offset_mapping"][token]
            assert token_start < end <= token_end  # the token holds the last character
        expected = np.full(p + a, rb.IGNORE_LABEL)
        for token, label in zip(ends, example.labels):
            if label != rb.IGNORE_LABEL:
                expected[p + token] = label
        np.testing.assert_array_equal(labels, expected)
        assert (labels != rb.IGNORE_LABEL).sum() == len(example.labels) - 1


def test_truncation_keeps_the_answer_marker_and_drops_cut_segments(tokenizer):
    examples = _examples()
    marker = tokenizer(" answer:", add_special_tokens=False)["input_ids"]
    full = rt.tokenize_segment_examples(examples, tokenizer, 32, 128)
    short = rt.tokenize_segment_examples(examples, tokenizer, len(marker) + 2, 12)
    p = len(marker) + 2
    assert short.attention_mask[:, :p].all()  # the prompt fills its block
    np.testing.assert_array_equal(short.input_ids[0, 2:p], marker)
    assert short.attention_mask[:, p:].all()  # answers fill theirs, no eos
    assert (short.input_ids[:, p:] != tokenizer.eos_token_id).all()
    kept = (short.labels != rb.IGNORE_LABEL).sum()
    assert short.num_segments_truncated == (full.labels != rb.IGNORE_LABEL).sum() - kept > 0
    # Labels that survive sit where they sat before the cut.
    np.testing.assert_array_equal(short.labels[:, p:], full.labels[:, 32 : 32 + 12])
    with pytest.raises(ValueError, match="cannot hold the answer marker"):
        rt.tokenize_segment_examples(examples, tokenizer, len(marker) - 1, 12)
    with pytest.raises(ValueError, match="must end with ' answer:'"):
        bad = rb.SegmentExample(0, "question: x", "y.", ((0, 2),), (0,))
        rt.tokenize_segment_examples([bad], tokenizer, 8, 8)


def test_preference_pairs_arrays(tokenizer):
    record = schema.parse_feedback(
        [{
            "question": "Where is it?",
            "passages": [["Louvre", "The Louvre is a museum.", "It is in Paris."]],
            "gold": "", "prediction 1": ANSWERS[0], "prediction 2": ANSWERS[1],
            "prediction 3": "Paris.", "prediction 4": "Lyon.",
            "feedback": {"errors": [], "missing-info": [], "corrected-prediction": ""},
            "preference": [2, 0, 0, 0, 0, 1],
        }],
        "<test>",
    )
    pairs = rb.build_holistic_pairs(record)
    assert [pair.prediction_indices for pair in pairs] == [(1, 0), (2, 3)]
    p, a = 48, 160
    batch = rt.tokenize_preference_pairs(pairs, tokenizer, p, a)
    assert batch.preferred_ids.shape == batch.other_mask.shape == (2, p + a)
    (prompt,) = rt.encode_prompts(tokenizer, [pairs[0].prompt], p)
    for row, pair in enumerate(pairs):
        for ids, mask, answer in (
            (batch.preferred_ids[row], batch.preferred_mask[row], pair.preferred),
            (batch.other_ids[row], batch.other_mask[row], pair.other),
        ):
            np.testing.assert_array_equal(ids[p - len(prompt) : p], prompt)
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            answer_ids = (answer_ids + [tokenizer.eos_token_id])[:a]
            np.testing.assert_array_equal(ids[p : p + len(answer_ids)], answer_ids)
            assert mask.sum() == len(prompt) + len(answer_ids)
    empty = rt.tokenize_preference_pairs([], tokenizer, p, a)
    assert empty.preferred_ids.shape == (0, p + a)
