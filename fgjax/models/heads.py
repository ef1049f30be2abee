"""Heads on final hidden states, shared by all families.

The LM head is family-specific (tied embeddings, T5's rescaling) and lives with each family.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from fgjax.models.partitioning import EMBED, MLP, VALUE_OUT


def dense(
    features: int,
    axes: tuple[str, str],
    *,
    use_bias: bool,
    dtype,
    param_dtype,
    name: str,
    init_std: float = 0.02,
) -> nn.Dense:
    """A ``Dense`` whose kernel and bias carry logical axis names."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(init_std), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)),
        name=name,
    )


class ValueHead(nn.Module):
    """The reference's value MLP: Linear(d, d) -> GELU -> Linear(d, 1), per token -> ``[B, T]``."""

    hidden_size: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, hidden: jax.Array) -> jax.Array:
        kw = dict(use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype)
        x = dense(self.hidden_size, (EMBED, MLP), name="dense", **kw)(hidden)
        x = nn.gelu(x, approximate=False)
        return dense(1, (MLP, VALUE_OUT), name="out", **kw)(x)[..., 0]


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last position with ``attention_mask == 1`` per row, ``[B]`` (0 if none)."""
    positions = jnp.arange(attention_mask.shape[-1])
    return jnp.max(jnp.where(attention_mask > 0, positions, 0), axis=-1)


def gather_last(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """``hidden[b, last_token_index[b]]`` -> ``[B, ...]``."""
    idx = last_token_index(attention_mask)
    return jnp.take_along_axis(hidden, idx[:, None, None], axis=1)[:, 0]
