"""Masked statistics and whitening of ``[B, T]`` arrays (the mask marks real response tokens).

Statistics are taken over *all* masked entries of the batch (not per row), as the release does
after gathering every device's rollout; under ``jax.jit`` with sharded inputs the sums are
global automatically.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

WHITEN_MODES = ("standard", "reference")
WHITEN_EPS = 1e-8


def _as_float_mask(mask: jax.Array) -> jax.Array:
    return (mask > 0).astype(jnp.float32)


def masked_sum(x: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
    """``sum(x * mask)``; masked entries are dropped with ``where`` so inf/NaN padding cannot
    leak in through ``0 * inf``."""
    return jnp.sum(jnp.where(mask > 0, x, 0.0), axis=axis)


def masked_mean(x: jax.Array, mask: jax.Array, axis=None) -> jax.Array:
    """Mean of ``x`` over entries with ``mask > 0`` (all of them, or along ``axis``).

    An all-zero mask gives NaN (0 / 0), as in the release: an empty batch is a bug upstream.
    """
    return masked_sum(x, mask, axis) / jnp.sum(_as_float_mask(mask), axis=axis)


def masked_var(x: jax.Array, mask: jax.Array, unbiased: bool = False) -> jax.Array:
    """Variance of the masked entries (a scalar). Population variance by default, which is what
    the release's whitening uses; ``unbiased=True`` applies Bessel's correction ``n / (n - 1)``."""
    mean = masked_mean(x, mask)
    var = masked_mean(jnp.square(x - mean), mask)
    if unbiased:
        count = jnp.sum(_as_float_mask(mask))
        var = var * count / (count - 1.0)
    return var


def masked_whiten(
    x: jax.Array, mask: jax.Array, shift_mean: bool = True, mode: str = "standard"
) -> jax.Array:
    """Whiten ``x [B, T]`` with statistics of its masked entries -> ``[B, T]`` float32.

    ``standard``: ``(x - mean) / sqrt(var + 1e-8)``, plus ``mean`` again when
    ``shift_mean=False`` (scale only), then zero outside the mask.

    ``reference`` reproduces the release: with ``s`` the masked *standard deviation* it
    multiplies by ``1 / sqrt(s + 1e-8)`` (so the result has spread ``sqrt(s)``, not 1) and does
    not re-mask, so padded positions keep ``(x_pad - mean) / sqrt(s) (+ mean)``.
    """
    if mode not in WHITEN_MODES:
        raise ValueError(f"whitening mode {mode!r}; allowed {WHITEN_MODES}")
    x = x.astype(jnp.float32)
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    spread = var if mode == "standard" else jnp.sqrt(var)
    whitened = (x - mean) * jax.lax.rsqrt(spread + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    if mode == "standard":
        whitened = jnp.where(mask > 0, whitened, 0.0)
    return whitened
