"""Prompt arrays for PPO: the policy prompt and each fused reward model's own prompt.

Arrays are left-padded (real tokens flush right), the layout every consumer accepts
(``fgjax.rollout``, ``fgjax.sequences``, ``fgjax.rewards.fused``). Keys follow the fused
reward path's convention ``batch[f"{input}_ids"]`` / ``batch[f"{input}_mask"]``:
``prompt`` (policy), ``rm_question`` (R1: question only), ``rm_passages`` (R2 / R3 /
holistic: question with passages).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from fgjax.data import rm_builders
from fgjax.data.qa_feedback_schema import QAPrompt
from fgjax.data.rm_tokenize import encode_prompts


def left_padded(rows: Sequence[Sequence[int]], width: int, pad_id: int):
    """``[N, width]`` int32 ids and mask with each row's tokens flush right."""
    ids = np.full((len(rows), width), pad_id, np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, row in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"row {i} has {len(row)} tokens, more than {width}")
        if row:
            ids[i, width - len(row) :] = row
            mask[i, width - len(row) :] = 1
    return ids, mask


def qa_prompt_arrays(
    prompts: Sequence[QAPrompt],
    tokenizer,
    max_prompt_len: int,
    max_rm_prompt_len: int,
) -> dict[str, np.ndarray]:
    """All prompt arrays of a split, ``[N, P]`` each (see the module docstring).

    The policy sees ``<text> answer:`` (its prompt with passages and the answer marker) — the
    same string R2/R3 read, so one tokenisation serves both when lengths agree.
    """
    with_passages = [rm_builders.policy_rm_prompt(p, with_passages=True) for p in prompts]
    question_only = [rm_builders.policy_rm_prompt(p, with_passages=False) for p in prompts]
    pad = tokenizer.pad_token_id
    arrays = {}
    for key, texts, width in (
        ("prompt", with_passages, max_prompt_len),
        ("rm_passages", with_passages, max_rm_prompt_len),
        ("rm_question", question_only, max_rm_prompt_len),
    ):
        ids, mask = left_padded(encode_prompts(tokenizer, texts, width), width, pad)
        arrays[f"{key}_ids"], arrays[f"{key}_mask"] = ids, mask
    return arrays


def batches_from(
    arrays: dict[str, np.ndarray], batch_size: int, seed: int, position: int
) -> Iterator[dict[str, np.ndarray]]:
    """Endless batches of ``batch_size`` prompts, reshuffled each epoch; batch ``k`` depends
    only on ``(seed, k)``, so a resumed run continues with exactly the batches it would have
    seen (``position`` = batches already consumed)."""
    count = len(next(iter(arrays.values())))
    if count < batch_size:
        raise ValueError(f"{count} prompts cannot fill a batch of {batch_size}")
    per_epoch = count // batch_size
    while True:
        epoch, index = divmod(position, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(count)
        rows = order[index * batch_size : (index + 1) * batch_size]
        yield {key: value[rows] for key, value in arrays.items()}
        position += 1
