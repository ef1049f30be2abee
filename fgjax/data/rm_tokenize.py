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


def encode_prompts(tokenizer, prompts: Sequence[str], max_prompt_len: int) -> list[list[int]]:
    """Prompt ids, at most ``max_prompt_len`` each, always ending with the answer marker's ids.

    One batched tokenizer call for all prompts (repeated prompts are encoded once).
    """
    suffix = " " + rm_builders.ANSWER_MARKER
    for prompt in prompts:
        if not prompt.endswith(suffix):
            raise ValueError(f"an RM prompt must end with {suffix!r}: {prompt[-40:]!r}")
    marker = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    if len(marker) > max_prompt_len:
        raise ValueError(f"max_prompt_len={max_prompt_len} cannot hold the answer marker")
    unique = list(dict.fromkeys(prompts))
    bodies = _encode(tokenizer, [prompt[: -len(suffix)] for prompt in unique])["input_ids"]
    by_prompt = {
        prompt: list(body[: max_prompt_len - len(marker)]) + marker
        for prompt, body in zip(unique, bodies)
    }
    return [by_prompt[prompt] for prompt in prompts]


def encode_answers(
    tokenizer, answers: Sequence[str], segments: Sequence[Sequence[tuple[int, int]]] | None = None
) -> tuple[list[list[int]], list[list[int]]]:
    """``(ids, segment_end_tokens)`` per answer: ids + eos (uncut) and each segment's end token.

    ``segments`` (per answer, character spans) may be None when no labels are placed.
    """
    encoded = _encode(tokenizer, list(answers), offsets=segments is not None)
    ids = [list(row) + [tokenizer.eos_token_id] for row in encoded["input_ids"]]
    if segments is None:
        return ids, [[] for _ in ids]
    ends = [
        text.segment_end_token_indices(offsets, spans, len(row)) if spans else []
        for offsets, spans, row in zip(encoded["offset_mapping"], segments, ids, strict=True)
    ]
    return ids, ends


def _encode(tokenizer, texts: list[str], offsets: bool = False) -> dict:
    if not texts:
        return {"input_ids": [], "offset_mapping": []}
    return tokenizer(texts, add_special_tokens=False, return_offsets_mapping=offsets)


def _rows(
    pad_id: int, prompts: list[list[int]], answers: list[list[int]], p: int, a: int
) -> tuple[np.ndarray, np.ndarray]:
    """``[E, P + A]`` ids and mask: prompt flush right before column P, answer from P on."""
    ids = np.full((len(prompts), p + a), pad_id, dtype=np.int32)
    mask = np.zeros((len(prompts), p + a), dtype=np.int32)
    for row, (prompt_ids, answer_ids) in enumerate(zip(prompts, answers, strict=True)):
        answer_ids = answer_ids[:a]
        ids[row, p - len(prompt_ids) : p], mask[row, p - len(prompt_ids) : p] = prompt_ids, 1
        ids[row, p : p + len(answer_ids)], mask[row, p : p + len(answer_ids)] = answer_ids, 1
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
    prompts = encode_prompts(tokenizer, [e.prompt for e in examples], p)
    answers, ends = encode_answers(
        tokenizer, [e.answer for e in examples], [e.segments for e in examples]
    )
    input_ids, attention_mask = _rows(tokenizer.pad_token_id, prompts, answers, p, a)
    labels = np.full(input_ids.shape, rm_builders.IGNORE_LABEL, dtype=np.int32)
    truncated = 0
    for row, example in enumerate(examples):
        for token, label in zip(ends[row], example.labels, strict=True):
            if label == rm_builders.IGNORE_LABEL:
                continue
            if token >= a:
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
    prompts = encode_prompts(tokenizer, [pair.prompt for pair in pairs], p)
    preferred, _ = encode_answers(tokenizer, [pair.preferred for pair in pairs])
    other, _ = encode_answers(tokenizer, [pair.other for pair in pairs])
    preferred_ids, preferred_mask = _rows(tokenizer.pad_token_id, prompts, preferred, p, a)
    other_ids, other_mask = _rows(tokenizer.pad_token_id, prompts, other, p, a)
    return TokenizedPairs(preferred_ids, preferred_mask, other_ids, other_mask, p)
