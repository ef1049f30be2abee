"""Token arrays for reward-model training, in the layout of the fused reward path.

Layout of one row (``P = max_prompt_len``, ``A = max_answer_len``), the one
``fgjax.sequences.concat_prompt_response`` builds for ``[prompt ; response]``::

    columns  0 ........... P-1 | P ................. P+A-1
             pads | prompt ids | answer ids, eos | pads
             (left-padded)       (right-padded)

- The prompt is tokenized on its own, its real tokens flush right in the first ``P``
  columns. A prompt too long loses tokens from the end of its body; the trailing
  ``" answer:"`` marker is always kept (it is tokenized separately and appended).
- The answer is tokenized on its own (no special tokens) and followed by eos, exactly as a
  sampled response; its token ``j`` sits in column ``P + j``. An answer longer than ``A``
  tokens is cut (no eos then), and the segments that end beyond the cut lose their labels.
- ``labels`` are -100 everywhere except at the end token of each labelled segment (0 = O,
  1 = ERR), placed by ``fgjax.text.segment_end_token_indices`` from a fast tokenizer's
  character offsets, as the reward path places segment rewards: the token holding the
  segment's last character, except that the final segment ends at the answer's last token
  (the eos). Positions are taken before the cut, so a cut segment has no label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from fgjax import text
from fgjax.data import rm_builders


@dataclasses.dataclass(frozen=True)
class TokenizedSegments:
    input_ids: np.ndarray  # [E, P + A] int32
    attention_mask: np.ndarray  # [E, P + A] int32, 1 on real tokens
    labels: np.ndarray  # [E, P + A] int32, -100 except at segment-end answer tokens
    prompt_len: int  # P: the answer block starts at this column
    num_segments_truncated: int  # labelled segments lost to the answer cut


@dataclasses.dataclass(frozen=True)
class TokenizedPairs:
    preferred_ids: np.ndarray  # [N, P + A] int32
    preferred_mask: np.ndarray  # [N, P + A] int32
    other_ids: np.ndarray  # [N, P + A] int32
    other_mask: np.ndarray  # [N, P + A] int32
    prompt_len: int


def _check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("reward-model tokenization needs a fast tokenizer (character offsets)")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs pad and eos tokens (fgjax.tokenizers.load_tokenizer)")


def encode_prompt(tokenizer, prompt: str, max_prompt_len: int) -> list[int]:
    """Prompt ids, at most ``max_prompt_len``, always ending with the answer marker's ids."""
    suffix = " " + rm_builders.ANSWER_MARKER
    if not prompt.endswith(suffix):
        raise ValueError(f"an RM prompt must end with {suffix!r}: {prompt[-40:]!r}")
    body = tokenizer(prompt[: -len(suffix)], add_special_tokens=False)["input_ids"]
    marker = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    if len(marker) > max_prompt_len:
        raise ValueError(f"max_prompt_len={max_prompt_len} cannot hold the answer marker")
    return body[: max_prompt_len - len(marker)] + marker


def encode_answer(
    tokenizer, answer: str, segments: Sequence[tuple[int, int]] = ()
) -> tuple[list[int], list[int]]:
    """``(ids, segment_end_tokens)``: answer ids + eos (uncut) and each segment's end token."""
    encoded = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"]) + [tokenizer.eos_token_id]
    if not segments:
        return ids, []
    return ids, text.segment_end_token_indices(encoded["offset_mapping"], segments, len(ids))


def _row(pad_id: int, prompt_ids: list[int], answer_ids: list[int], p: int, a: int):
    ids = np.full(p + a, pad_id, dtype=np.int32)
    mask = np.zeros(p + a, dtype=np.int32)
    ids[p - len(prompt_ids) : p], mask[p - len(prompt_ids) : p] = prompt_ids, 1
    ids[p : p + len(answer_ids)], mask[p : p + len(answer_ids)] = answer_ids, 1
    return ids, mask


def tokenize_segment_examples(
    examples: Sequence[rm_builders.SegmentExample],
    tokenizer,
    max_prompt_len: int,
    max_answer_len: int,
) -> TokenizedSegments:
    """R1 / R2 examples -> fixed-length arrays (layout in the module docstring)."""
    _check_tokenizer(tokenizer)
    p, a = max_prompt_len, max_answer_len
    shape = (len(examples), p + a)
    input_ids = np.zeros(shape, dtype=np.int32)
    attention_mask = np.zeros(shape, dtype=np.int32)
    labels = np.full(shape, rm_builders.IGNORE_LABEL, dtype=np.int32)
    truncated = 0
    for row, example in enumerate(examples):
        prompt_ids = encode_prompt(tokenizer, example.prompt, p)
        answer_ids, ends = encode_answer(tokenizer, example.answer, example.segments)
        answer_ids = answer_ids[:a]
        ids, mask = _row(tokenizer.pad_token_id, prompt_ids, answer_ids, p, a)
        input_ids[row], attention_mask[row] = ids, mask
        for token, label in zip(ends, example.labels, strict=True):
            if label == rm_builders.IGNORE_LABEL:
                continue
            if token >= len(answer_ids):
                truncated += 1
                continue
            labels[row, p + token] = label
    return TokenizedSegments(input_ids, attention_mask, labels, p, truncated)


def tokenize_preference_pairs(
    pairs: Sequence[rm_builders.PreferencePair],
    tokenizer,
    max_prompt_len: int,
    max_answer_len: int,
) -> TokenizedPairs:
    """R3 / holistic pairs -> ``[N, P + A]`` arrays of the preferred and the other input."""
    _check_tokenizer(tokenizer)
    p, a = max_prompt_len, max_answer_len
    rows = {"preferred": [], "other": []}
    prompt_cache: dict[str, list[int]] = {}
    for pair in pairs:
        if pair.prompt not in prompt_cache:
            prompt_cache[pair.prompt] = encode_prompt(tokenizer, pair.prompt, p)
        prompt_ids = prompt_cache[pair.prompt]
        for key, answer in (("preferred", pair.preferred), ("other", pair.other)):
            answer_ids = encode_answer(tokenizer, answer)[0][:a]
            rows[key].append(_row(tokenizer.pad_token_id, prompt_ids, answer_ids, p, a))

    def stack(key: str, part: int) -> np.ndarray:
        if not rows[key]:
            return np.zeros((0, p + a), dtype=np.int32)
        return np.stack([r[part] for r in rows[key]])

    return TokenizedPairs(stack("preferred", 0), stack("preferred", 1),
                          stack("other", 0), stack("other", 1), p)
