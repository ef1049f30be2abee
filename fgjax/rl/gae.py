"""Generalised advantage estimation over ``[B, T]`` by a reverse ``lax.scan`` over time."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

GAE_MODES = ("standard", "reference")


def _shift_left(x: jax.Array) -> jax.Array:
    """``x[:, t + 1]`` at column ``t``, zero in the last column."""
    return jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)


def gae(
    rewards: jax.Array,
    values: jax.Array,
    mask: jax.Array,
    gamma: float,
    lam: float,
    mode: str = "standard",
) -> tuple[jax.Array, jax.Array]:
    """Advantages and returns, both ``[B, T]`` float32, from per-token ``rewards``, ``values``
    and the response ``mask`` (all ``[B, T]``; real tokens form a prefix of each row).

    ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma * lam * A_{t+1}``,
    ``returns = A + V``.

    ``standard``: each row ends at its own last real token (the value and advantage after it
    are 0); rewards and values outside the mask are ignored; outputs are zero outside the mask.

    ``reference`` reproduces the release: the recursion runs over the first ``max_b len_b``
    columns for every row, reading ``rewards`` and ``values`` there as given (the release
    multiplies values by the mask beforehand but feeds the un-masked whitened rewards, so a
    shorter row's padded positions carry rewards back into its last real tokens). The value
    after column ``max_len - 1`` is 0; later columns get advantage 0 and
    ``returns = values`` there. Nothing is re-masked.
    """
    if mode not in GAE_MODES:
        raise ValueError(f"GAE mode {mode!r}; allowed {GAE_MODES}")
    rewards = rewards.astype(jnp.float32)
    values = values.astype(jnp.float32)
    maskf = (mask > 0).astype(jnp.float32)
    if mode == "standard":
        live = maskf
    else:
        max_len = jnp.max(jnp.sum(maskf, axis=1))
        columns = jnp.arange(rewards.shape[1], dtype=jnp.float32)
        live = jnp.broadcast_to((columns < max_len).astype(jnp.float32), rewards.shape)
    used_values = values * live
    next_live = _shift_left(live)  # 0 where the row's recursion ends after column t
    deltas = rewards * live + gamma * _shift_left(used_values) - used_values

    def backward_step(next_advantage, step):
        delta, continues = step
        advantage = delta + gamma * lam * continues * next_advantage
        return advantage, advantage

    _, advantages = lax.scan(
        backward_step,
        jnp.zeros(rewards.shape[:1], jnp.float32),
        (deltas.T, next_live.T),
        reverse=True,
    )
    advantages = advantages.T * live
    if mode == "standard":
        return advantages, (advantages + values) * maskf
    return advantages, advantages + values
