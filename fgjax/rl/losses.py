"""Clipped PPO losses and their diagnostics on ``[B, T]`` arrays.

Losses come back as ``(sum over masked tokens, masked token count)`` so that averages over
minibatches or devices stay exact: sum the pairs, divide once. ``*_mean`` helpers divide.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fgjax.rl.whiten import masked_sum


def _count(mask: jax.Array) -> jax.Array:
    return jnp.sum((mask > 0).astype(jnp.float32))


def _log_ratio(logprobs: jax.Array, old_logprobs: jax.Array, mask: jax.Array) -> jax.Array:
    # Zero on padding before exp: padded log-probs may be huge negatives, and exp(inf) * 0 = NaN.
    diff = logprobs.astype(jnp.float32) - old_logprobs.astype(jnp.float32)
    return jnp.where(mask > 0, diff, 0.0)


def ppo_policy_loss(
    logprobs: jax.Array,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip: float,
) -> tuple[jax.Array, jax.Array]:
    """Clipped surrogate: per token ``max(-A * r, -A * clip(r, 1 - clip, 1 + clip))`` with
    ``r = exp(logprobs - old_logprobs)``. Returns ``(loss_sum, token_count)``, scalars."""
    ratio = jnp.exp(_log_ratio(logprobs, old_logprobs, mask))
    advantages = advantages.astype(jnp.float32)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip, 1.0 + clip)
    return masked_sum(jnp.maximum(unclipped, clipped), mask), _count(mask)


def ppo_value_loss(
    values: jax.Array,
    old_values: jax.Array,
    returns: jax.Array,
    mask: jax.Array,
    clip: float,
) -> tuple[jax.Array, jax.Array]:
    """Clipped value loss: per token ``0.5 * max((v - R)^2, (clip(v, v_old +- clip) - R)^2)``.
    Returns ``(loss_sum, token_count)``, scalars."""
    values = values.astype(jnp.float32)
    old_values = old_values.astype(jnp.float32)
    returns = returns.astype(jnp.float32)
    clipped_values = jnp.clip(values, old_values - clip, old_values + clip)
    per_token = 0.5 * jnp.maximum(
        jnp.square(values - returns), jnp.square(clipped_values - returns)
    )
    return masked_sum(per_token, mask), _count(mask)


def policy_clip_fraction(
    logprobs: jax.Array, old_logprobs: jax.Array, mask: jax.Array, clip: float
) -> tuple[jax.Array, jax.Array]:
    """``(count, token_count)`` of tokens whose ratio lies outside ``[1 - clip, 1 + clip]``."""
    ratio = jnp.exp(_log_ratio(logprobs, old_logprobs, mask))
    outside = (jnp.abs(ratio - 1.0) > clip).astype(jnp.float32)
    return masked_sum(outside, mask), _count(mask)


def value_clip_fraction(
    values: jax.Array, old_values: jax.Array, mask: jax.Array, clip: float
) -> tuple[jax.Array, jax.Array]:
    """``(count, token_count)`` of tokens whose new value moved more than ``clip`` from the old."""
    moved = jnp.abs(values.astype(jnp.float32) - old_values.astype(jnp.float32)) > clip
    return masked_sum(moved.astype(jnp.float32), mask), _count(mask)


def approx_kl(
    logprobs: jax.Array, old_logprobs: jax.Array, mask: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(sum, token_count)`` of ``0.5 * (logprobs - old_logprobs)^2``, the usual PPO estimate of
    KL(old || new) (second order in the log-ratio)."""
    log_ratio = _log_ratio(logprobs, old_logprobs, mask)
    return masked_sum(0.5 * jnp.square(log_ratio), mask), _count(mask)


def ppo_diagnostics(
    logprobs: jax.Array,
    old_logprobs: jax.Array,
    values: jax.Array,
    old_values: jax.Array,
    mask: jax.Array,
    cliprange: float,
    cliprange_value: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-minibatch means ``(policy_clip_fraction, value_clip_fraction, approx_kl)`` (scalars),
    for logging; use the ``(sum, count)`` functions to aggregate exactly across minibatches."""
    ratio_clip = policy_clip_fraction(logprobs, old_logprobs, mask, cliprange)
    value_clip = value_clip_fraction(values, old_values, mask, cliprange_value)
    kl = approx_kl(logprobs, old_logprobs, mask)
    return tuple(total / count for total, count in (ratio_clip, value_clip, kl))

