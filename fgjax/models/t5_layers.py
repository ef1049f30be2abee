"""T5 building blocks: RMS-style layer norm, relative position buckets, attention without score
scaling, the (gated) feed-forward, the encoder / decoder stacks with an optional KV cache, and
the sequence-classification head.

Layouts follow Hugging Face ``T5Stack`` so that checkpoints map tensor by tensor: every block
has a self-attention (``q k v o``), a cross-attention in the decoder, and a feed-forward (``wi`` /
``wi_0 wi_1``, ``wo``), each behind its own pre-norm. The relative position bias is an embedding
owned by the stack (HF stores it in block 0) and shared by all its blocks.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from fgjax.models.heads import dense
from fgjax.models.partitioning import (
    ACT_EMBED,
    BATCH,
    EMBED,
    HEADS,
    LABELS,
    LENGTH,
    MLP,
    NORM,
    REL_BUCKETS,
)

# Masked attention scores; finite so that a fully masked row (padding) stays NaN-free.
MASKED_SCORE = -1e9

# HF ``ACT2FN`` names used by T5 configs ("gelu" is exact, "gelu_new" the tanh approximation).
ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def relative_position_bucket(
    relative_position: jax.Array, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> jax.Array:
    """Bucket of ``key_position - query_position`` (int array, any shape), as HF / Mesh TF.

    Half the buckets hold exact small distances, the rest log-spaced distances up to
    ``max_distance``; the encoder also splits on the sign. The log arithmetic is float32 like
    the PyTorch reference, so buckets agree at the exact-boundary distances too.
    """
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).astype(relative_position.dtype) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log(0) never reaches the result (small distances take the exact branch); avoid it anyway.
    ratio = jnp.maximum(distance, max_exact).astype(jnp.float32) / np.float32(max_exact)
    scaled = (
        jnp.log(ratio)
        / np.float32(math.log(max_distance / max_exact))
        * np.float32(num_buckets - max_exact)
    )
    large = jnp.minimum(max_exact + scaled.astype(distance.dtype), num_buckets - 1)
    return buckets + jnp.where(is_small, distance, large)


def constrain(x: jax.Array) -> jax.Array:
    """Shard activations ``[B, T, D]`` at block boundaries (a no-op outside a mesh context)."""
    return nn.with_logical_constraint(x, (BATCH, LENGTH, ACT_EMBED))


class LayerNorm(nn.Module):
    """T5's norm: scale only, no mean subtraction, no bias; statistics in float32."""

    epsilon: float
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.with_logical_partitioning(nn.initializers.ones, (NORM,))
        scale = self.param("scale", init, (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon)
        return normed.astype(self.dtype) * scale.astype(self.dtype)


def attend(query, key, value, bias, mask) -> jax.Array:
    """``query [B, Tq, H, Dk]``, ``key/value [B, Tk, H, Dk]``, ``bias [B|1, H, Tq, Tk]`` or None,
    ``mask [B, Tq|1, Tk]`` bool -> ``[B, Tq, H, Dk]``. No ``1/sqrt(Dk)``: T5 folds it into the
    weights. Scores and softmax in float32."""
    scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    scores = jnp.where(mask[:, None], scores, MASKED_SCORE)
    probs = jax.nn.softmax(scores, axis=-1).astype(value.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, value)


class Attention(nn.Module):
    """Multi-head attention with 2-D kernels ``q/k/v [embed, heads*Dk]``, ``o [heads*Dk, embed]``
    (tensor parallelism shards whole heads). Initialisation scales as in HF ``_init_weights``."""

    d_model: int
    num_heads: int
    d_kv: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        inner = self.num_heads * self.d_kv
        # Named by the attribute they are assigned to (setup-style), hence name=None.
        kw = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name=None)
        self.q = dense(inner, (EMBED, HEADS), init_std=(self.d_model * self.d_kv) ** -0.5, **kw)
        self.k = dense(inner, (EMBED, HEADS), init_std=self.d_model**-0.5, **kw)
        self.v = dense(inner, (EMBED, HEADS), init_std=self.d_model**-0.5, **kw)
        self.o = dense(self.d_model, (HEADS, EMBED), init_std=inner**-0.5, **kw)

    def _split(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.num_heads, self.d_kv)

    def project_kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Keys and values ``[B, T, H, Dk]`` of ``x [B, T, D]``."""
        return self._split(self.k(x)), self._split(self.v(x))

    def __call__(self, x, keys, values, bias, mask) -> jax.Array:
        """Queries from ``x [B, Tq, D]`` over ``keys/values [B, Tk, H, Dk]`` -> ``[B, Tq, D]``."""
        out = attend(self._split(self.q(x)), keys, values, bias, mask)
        return self.o(out.reshape(*out.shape[:-2], self.num_heads * self.d_kv))


class FeedForward(nn.Module):
    """``wo(act(wi x))`` (T5 v1.0) or ``wo(act(wi_0 x) * wi_1 x)`` (gated, T5 v1.1)."""

    d_model: int
    d_ff: int
    activation: str
    gated: bool
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        act = ACTIVATIONS[self.activation]
        std_in = self.d_model**-0.5
        if self.gated:
            gate = dense(self.d_ff, (EMBED, MLP), name="wi_0", init_std=std_in, **kw)(x)
            linear = dense(self.d_ff, (EMBED, MLP), name="wi_1", init_std=std_in, **kw)(x)
            hidden = act(gate) * linear
        else:
            hidden = act(dense(self.d_ff, (EMBED, MLP), name="wi", init_std=std_in, **kw)(x))
        return dense(self.d_model, (MLP, EMBED), name="wo", init_std=self.d_ff**-0.5, **kw)(hidden)


class Block(nn.Module):
    """Pre-norm residual block: self-attention, cross-attention (decoder only), feed-forward."""

    cfg: Any  # t5.T5Config
    is_decoder: bool
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.cfg
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = dict(d_model=cfg.d_model, num_heads=cfg.num_heads, d_kv=cfg.d_kv, **kw)
        self.self_attention_norm = LayerNorm(cfg.layer_norm_epsilon, **kw)
        self.self_attention = Attention(**attn)
        if self.is_decoder:
            self.cross_attention_norm = LayerNorm(cfg.layer_norm_epsilon, **kw)
            self.cross_attention = Attention(**attn)
        self.feed_forward_norm = LayerNorm(cfg.layer_norm_epsilon, **kw)
        self.feed_forward = FeedForward(
            cfg.d_model, cfg.d_ff, cfg.activation, cfg.is_gated, **kw
        )

    def cross_kv(self, encoder_hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Cross-attention keys / values ``[B, P, H, Dk]`` of the encoder output."""
        return self.cross_attention.project_kv(encoder_hidden)

    def __call__(self, x, bias, mask, cross=None, self_cache=None, slot=None):
        """``x [B, T, D]``; ``bias [B|1, H, T, S]``; ``mask [B, T|1, S]`` bool.

        ``cross = (keys, values, mask [B, 1, P])`` in the decoder. With ``self_cache = (keys,
        values)`` of ``[B, S, H, Dk]`` the new keys / values are first written at ``slot``.
        Returns ``(x, (keys, values))``.
        """
        normed = self.self_attention_norm(x)
        keys, values = self.self_attention.project_kv(normed)
        if self_cache is not None:
            start = (0, slot, 0, 0)
            keys = lax.dynamic_update_slice(self_cache[0], keys.astype(self_cache[0].dtype), start)
            values = lax.dynamic_update_slice(
                self_cache[1], values.astype(self_cache[1].dtype), start
            )
        x = x + self.self_attention(normed, keys, values, bias, mask)
        if self.is_decoder:
            cross_keys, cross_values, cross_mask = cross
            normed = self.cross_attention_norm(x)
            x = x + self.cross_attention(normed, cross_keys, cross_values, None, cross_mask)
        x = x + self.feed_forward(self.feed_forward_norm(x))
        return constrain(x), (keys, values)


class Stack(nn.Module):
    """The encoder (bidirectional buckets) or the decoder (causal buckets, cross-attention)."""

    cfg: Any  # t5.T5Config
    is_decoder: bool
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.cfg
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        num_layers = cfg.num_decoder_layers if self.is_decoder else cfg.num_layers
        # Heads here are the n_heads bias channels, not heads*Dk: tiny, so replicated.
        self.relative_attention_bias = nn.Embed(
            cfg.relative_attention_num_buckets,
            cfg.num_heads,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(cfg.d_model**-0.5), (REL_BUCKETS, None)
            ),
            **kw,
        )
        self.blocks = [Block(cfg, self.is_decoder, **kw) for _ in range(num_layers)]
        self.final_layer_norm = LayerNorm(cfg.layer_norm_epsilon, **kw)

    def position_bias(self, query_positions: jax.Array, key_positions: jax.Array) -> jax.Array:
        """``query_positions [B|1, Tq]``, ``key_positions [S]`` -> bias ``[B|1, H, Tq, S]``."""
        relative = key_positions[None, None, :] - query_positions[:, :, None]
        buckets = relative_position_bucket(
            relative,
            bidirectional=not self.is_decoder,
            num_buckets=self.cfg.relative_attention_num_buckets,
            max_distance=self.cfg.relative_attention_max_distance,
        )
        return jnp.transpose(self.relative_attention_bias(buckets), (0, 3, 1, 2))

    def cross_kv(self, encoder_hidden: jax.Array) -> tuple[tuple[jax.Array, jax.Array], ...]:
        """Per decoder layer, cross-attention ``(keys, values)`` ``[B, P, H, Dk]``."""
        return tuple(block.cross_kv(encoder_hidden) for block in self.blocks)

    def _run(self, x, bias, mask, cross_kv=None, cross_mask=None, caches=None, slot=None):
        new_caches = []
        for i, block in enumerate(self.blocks):
            cross = None if cross_kv is None else (*cross_kv[i], cross_mask)
            x, kv = block(x, bias, mask, cross, None if caches is None else caches[i], slot)
            new_caches.append(kv)
        return self.final_layer_norm(x), tuple(new_caches)

    def encode(self, x: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """Encoder: embedded ``x [B, T, D]``, ``attention_mask [B, T]`` -> ``[B, T, D]``."""
        positions = jnp.arange(x.shape[1])
        bias = self.position_bias(positions[None], positions)
        hidden, _ = self._run(x, bias, (attention_mask > 0)[:, None, :])
        return hidden

    def decode(self, x, attention_mask, cross_kv, encoder_mask) -> jax.Array:
        """Decoder over a whole sequence: ``x [B, T, D]``, ``attention_mask [B, T]``, per-layer
        ``cross_kv``, ``encoder_mask [B, P]`` -> ``[B, T, D]``."""
        length = x.shape[1]
        positions = jnp.arange(length)
        causal = positions[None, :] <= positions[:, None]
        mask = causal[None] & (attention_mask > 0)[:, None, :]
        bias = self.position_bias(positions[None], positions)
        hidden, _ = self._run(x, bias, mask, cross_kv, (encoder_mask > 0)[:, None, :])
        return hidden

    def decode_cached(self, x, index, caches, cross_kv, encoder_mask):
        """One decoder step: ``x [B, 1, D]`` at position ``index [B]`` (equal across rows) with
        per-layer self caches ``[B, S, H, Dk]`` -> ``(hidden [B, 1, D], new caches)``.

        The token attends to slots ``0..index`` and its bias uses query position ``index``
        against key positions ``0..S-1``, exactly as row ``index`` of the full causal pass.
        """
        key_positions = jnp.arange(caches[0][0].shape[1])
        mask = (key_positions[None, :] <= index[:, None])[:, None, :]
        bias = self.position_bias(index[:, None], key_positions)
        return self._run(
            x, bias, mask, cross_kv, (encoder_mask > 0)[:, None, :], caches, index[0]
        )


class ClassificationHead(nn.Module):
    """HF ``T5ClassificationHead``: dense(d, d) -> tanh -> out_proj(d, L)."""

    d_model: int
    num_labels: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pooled: jax.Array) -> jax.Array:
        kw = dict(use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype)
        std = self.d_model**-0.5
        x = dense(self.d_model, (EMBED, MLP), name="dense", init_std=std, **kw)(pooled)
        x = jnp.tanh(x)
        return dense(
            self.num_labels, (MLP, LABELS), name="out_proj", init_std=std, **kw
        )(x)
