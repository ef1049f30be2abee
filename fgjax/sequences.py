"""Array helpers that lay prompts and responses side by side (no model imports).

Decoder-only models score ``[prompt ; response]`` as one sequence. Prompts are left-aligned
first (real tokens flush right), so the response always starts at column ``P`` and the output
at column ``P - 1 + j`` is the one that predicts response token ``j`` — for every row, with no
per-row gather.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def left_align(ids: jax.Array, mask: jax.Array, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """Move each row's real tokens to the right edge: ``[B, P]`` -> ``[B, P]``.

    Works for right-padded, left-padded and already-aligned rows; token order is kept.
    """
    mask = mask.astype(jnp.int32)
    # Stable order: pads first (key 0), then real tokens (key 1) in their original order.
    order = jnp.argsort(mask, axis=1, stable=True)
    aligned_mask = jnp.take_along_axis(mask, order, axis=1)
    aligned = jnp.take_along_axis(ids, order, axis=1)
    return jnp.where(aligned_mask > 0, aligned, pad_id), aligned_mask


def concat_prompt_response(
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    response_ids: jax.Array,
    response_mask: jax.Array,
    pad_id: int,
) -> tuple[jax.Array, jax.Array]:
    """``[B, P] + [B, N] -> [B, P + N]`` with the prompt left-aligned (response starts at ``P``)."""
    prompt_ids, prompt_mask = left_align(prompt_ids, prompt_mask, pad_id)
    ids = jnp.concatenate([prompt_ids, response_ids], axis=1)
    mask = jnp.concatenate([prompt_mask, response_mask.astype(prompt_mask.dtype)], axis=1)
    return ids, mask


def shift_right(response_ids: jax.Array, response_mask: jax.Array, start_id: int, pad_id: int):
    """Teacher-forcing decoder inputs ``[start, y_0, ..., y_{N-2}]`` and their mask (T5)."""
    ids = jnp.where(response_mask > 0, response_ids, pad_id)
    start = jnp.full_like(ids[:, :1], start_id)
    dec_ids = jnp.concatenate([start, ids[:, :-1]], axis=1)
    dec_mask = jnp.concatenate([jnp.ones_like(response_mask[:, :1]), response_mask[:, :-1]], axis=1)
    return dec_ids, dec_mask
