"""Per-token quantities from policy logits, always in float32 (bfloat16 logits lose too much in
``log_softmax`` for importance ratios)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def logprobs_from_logits(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """``log p(tokens)``: ``logits [B, T, V]``, ``tokens [B, T]`` int -> ``[B, T]`` float32."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def entropy_from_logits(logits: jax.Array) -> jax.Array:
    """Entropy of each position's categorical distribution: ``[B, T, V]`` -> ``[B, T]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
