"""Per-token KL penalty against the frozen reference policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def kl_penalized_rewards(
    rewards: jax.Array,
    logprobs: jax.Array,
    ref_logprobs: jax.Array,
    mask: jax.Array,
    kl_coef: float,
) -> tuple[jax.Array, jax.Array]:
    """``(rewards - kl_coef * kl, kl)``, both ``[B, T]`` float32, with the per-token sample KL
    ``kl = logprobs - ref_logprobs`` on real tokens and 0 on padding (as the release does by
    padding the difference with 0). ``rewards`` are used as given (dense rewards are already 0
    on padding)."""
    kl = jnp.where(mask > 0, logprobs.astype(jnp.float32) - ref_logprobs.astype(jnp.float32), 0.0)
    return rewards.astype(jnp.float32) - kl_coef * kl, kl
