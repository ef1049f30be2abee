"""Pieces shared by the decoder-only families (GPT-2, Llama/Qwen2).

* ``Attention``: multi-head / grouped-query self-attention with optional RoPE and an optional
  KV cache written at a slot index with ``lax.dynamic_update_slice`` (static shapes).
* ``DecoderOnly``: the forward pass, the heads and incremental decoding on top of a family's
  embedding, blocks and final norm.
* ``HFName`` tables: one list of (Flax path, HF tensor name, transpose) per family and head,
  read in both directions for import and export.

Position ids come from the attention mask: ``positions = max(cumsum(mask) - 1, 0)``. This equals
Hugging Face on right padding, and keeps the positions of ``[prompt ; response]`` rows with a
masked gap in the middle equal to those used while sampling from the KV cache.

KV cache (every leaf batch-major, so a sampler can ``jnp.repeat`` it along axis 0)::

    {"keys":   tuple of L arrays [B, S, KV, Dh],   S = P + max_new_tokens slots
     "values": tuple of L arrays [B, S, KV, Dh],
     "valid":  [B, S] bool, slots holding a real token,
     "slot":   [B] int32, the next slot to write (equal across rows),
     "position": [B] int32, the next position id (real tokens so far) of each row}
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from fgjax.models import heads as heads_lib
from fgjax.models.hf_io import CheckpointFormatError
from fgjax.models.partitioning import (
    ACT_EMBED,
    BATCH,
    EMBED,
    HEADS,
    KV_HEADS,
    LABELS,
    LENGTH,
    VOCAB,
)

# Masked attention scores; finite so that a fully masked row (padding) stays NaN-free.
MASKED_SCORE = -1e9


def positions_from_mask(attention_mask: jax.Array) -> jax.Array:
    """Position id of each token, ``[B, T]`` int32: the number of real tokens before it."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def padded_mask(attention_mask: jax.Array, num_keys: int) -> jax.Array:
    """``[B, S]`` bool: the ``[B, T]`` mask padded with ``False`` to ``S >= T`` slots."""
    pad = num_keys - attention_mask.shape[1]
    return jnp.pad(attention_mask > 0, ((0, 0), (0, pad)))


def causal_mask(attention_mask: jax.Array, num_keys: int) -> jax.Array:
    """``[B, T, S]`` bool: query ``i`` may see key ``j`` if ``j <= i`` and key ``j`` is real.

    ``attention_mask`` is ``[B, T]``; keys beyond ``T`` (empty cache slots) are never visible.
    """
    length = attention_mask.shape[1]
    key_real = padded_mask(attention_mask, num_keys)
    causal = jnp.arange(num_keys)[None, :] <= jnp.arange(length)[:, None]
    return causal[None] & key_real[:, None, :]


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding in the Hugging Face (non-interleaved, rotate-half) layout.

    ``x`` is ``[B, T, N, Dh]``, ``positions`` ``[B, T]``; computed in float32.
    """
    head_dim = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, Dh/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    x32 = x.astype(jnp.float32)
    half = head_dim // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    return (x32 * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x.dtype)


class Attention(nn.Module):
    """Self-attention with ``num_kv_heads`` shared by groups of query heads.

    Kernels stay 2-D (``q [embed, heads*Dh]``, ``k/v [embed, kv_heads*Dh]``, ``o [heads*Dh,
    embed]``) so tensor parallelism shards whole heads.
    """

    num_heads: int
    num_kv_heads: int
    head_dim: int
    qkv_bias: bool
    out_bias: bool
    rope_theta: float | None = None  # None: no rotary embedding (GPT-2)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, positions, mask, cache_kv=None, slot=None):
        """``x [B, T, D]``, ``positions [B, T]``, ``mask [B, T, S]`` bool.

        Without a cache ``S == T``; with ``cache_kv = (keys, values)`` of ``[B, S, KV, Dh]``,
        the new keys/values are written at slots ``[slot, slot + T)`` first.
        Returns ``(out [B, T, D], (keys, values))``.
        """
        batch, length, width = x.shape
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        q_width, kv_width = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        q = heads_lib.dense(q_width, (EMBED, HEADS), use_bias=self.qkv_bias, name="q_proj", **kw)
        k = heads_lib.dense(
            kv_width, (EMBED, KV_HEADS), use_bias=self.qkv_bias, name="k_proj", **kw
        )
        v = heads_lib.dense(
            kv_width, (EMBED, KV_HEADS), use_bias=self.qkv_bias, name="v_proj", **kw
        )
        o = heads_lib.dense(width, (HEADS, EMBED), use_bias=self.out_bias, name="o_proj", **kw)
        query = q(x).reshape(batch, length, self.num_heads, self.head_dim)
        key = k(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
        value = v(x).reshape(batch, length, self.num_kv_heads, self.head_dim)
        if self.rope_theta is not None:
            query = rope(query, positions, self.rope_theta)
            key = rope(key, positions, self.rope_theta)
        if cache_kv is not None:
            start = (0, slot, 0, 0)
            key = lax.dynamic_update_slice(cache_kv[0], key.astype(cache_kv[0].dtype), start)
            value = lax.dynamic_update_slice(cache_kv[1], value.astype(cache_kv[1].dtype), start)
        out = grouped_attention(query, key, value, mask)
        return o(out.reshape(batch, length, q_width)), (key, value)


def grouped_attention(query, key, value, mask) -> jax.Array:
    """``query [B, T, H, Dh]``, ``key/value [B, S, KV, Dh]``, ``mask [B, T, S]``
    -> ``[B, T, H, Dh]``.

    Query head ``h`` uses key/value head ``h // (H // KV)`` (as ``repeat_kv`` in HF). Scores and
    softmax in float32.
    """
    batch, length, num_heads, head_dim = query.shape
    num_kv = key.shape[2]
    grouped = query.reshape(batch, length, num_kv, num_heads // num_kv, head_dim)
    scores = jnp.einsum(
        "btkgd,bskd->bkgts", grouped, key.astype(query.dtype), preferred_element_type=jnp.float32
    ) / np.sqrt(head_dim).astype(np.float32)
    scores = jnp.where(mask[:, None, None], scores, MASKED_SCORE)
    probs = jax.nn.softmax(scores, axis=-1).astype(query.dtype)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, value.astype(query.dtype))
    return out.reshape(batch, length, num_heads, head_dim)


def constrain(x: jax.Array) -> jax.Array:
    """Shard activations ``[B, T, D]`` at block boundaries (a no-op outside a mesh context)."""
    return nn.with_logical_constraint(x, (BATCH, LENGTH, ACT_EMBED))


class DecoderOnly(nn.Module):
    """Forward pass, heads and KV-cache decoding for a pre-norm decoder-only transformer.

    A family subclass defines ``setup`` (calling ``setup_heads``) and ``embed(ids, positions)``,
    ``final_norm(x)``, ``tied_logits(hidden)`` and the property ``layers`` (the list of blocks;
    each block maps ``(x, positions, mask, cache_kv, slot) -> (x, (keys, values))``).
    """

    cfg: Any
    head: str = "lm"
    num_labels: int = 2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup_heads(self) -> None:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.head in ("lm", "lm_value") and not self.cfg.tie_word_embeddings:
            self.lm_head = heads_lib.dense(
                self.cfg.vocab_size, (EMBED, VOCAB), use_bias=False, name="lm_head", **kw
            )
        if self.head in ("value", "lm_value"):
            self.value_head = heads_lib.ValueHead(self.cfg.hidden_size, **kw)
        if self.head in ("token_cls", "seq_reg"):
            # As in HF: token classification has a bias, sequence classification has none.
            self.score = heads_lib.dense(
                self.num_labels,
                (EMBED, LABELS),
                use_bias=self.head == "token_cls",
                name="score",
                **kw,
            )

    def lm_logits(self, hidden: jax.Array) -> jax.Array:
        if self.cfg.tie_word_embeddings:
            return self.tied_logits(hidden)
        return self.lm_head(hidden)

    def backbone(self, input_ids, positions, mask, caches=None, slot=None):
        """Final hidden states ``[B, T, D]`` and per-layer ``(keys, values)``."""
        x = constrain(self.embed(input_ids, positions))
        new_caches = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, positions, mask, None if caches is None else caches[i], slot)
            x = constrain(x)
            new_caches.append(kv)
        return self.final_norm(x), new_caches

    def __call__(
        self, input_ids, attention_mask, decoder_input_ids=None, decoder_attention_mask=None
    ):
        """``input_ids``, ``attention_mask`` ``[B, T]`` -> the head's output (see ``base.py``).

        ``seq_reg`` returns ``[B]`` when ``num_labels == 1`` (a scalar score), else ``[B, L]``.
        """
        if decoder_input_ids is not None or decoder_attention_mask is not None:
            raise ValueError(f"{type(self).__name__} is decoder-only: pass no decoder inputs")
        positions = positions_from_mask(attention_mask)
        mask = causal_mask(attention_mask, input_ids.shape[1])
        hidden, _ = self.backbone(input_ids, positions, mask)
        if self.head == "lm":
            return self.lm_logits(hidden)
        if self.head == "value":
            return self.value_head(hidden)
        if self.head == "lm_value":
            return self.lm_logits(hidden), self.value_head(hidden)
        if self.head == "token_cls":
            return self.score(hidden)
        if self.head == "seq_reg":
            scores = self.score(heads_lib.gather_last(hidden, attention_mask))
            return scores[:, 0] if self.num_labels == 1 else scores
        raise ValueError(f"unknown head {self.head!r}")

    def _check_lm(self) -> None:
        if self.head not in ("lm", "lm_value"):
            raise ValueError(f"decoding needs an 'lm' or 'lm_value' head, not {self.head!r}")

    def start_decoding(self, input_ids, attention_mask, max_new_tokens: int):
        """Prefill a cache of ``P + max_new_tokens`` slots from a left- or right-padded prompt
        ``[B, P]``. Returns the logits for the first new token ``[B, V]`` and the cache."""
        self._check_lm()
        batch, prompt_len = input_ids.shape
        capacity = prompt_len + max_new_tokens
        num_kv, head_dim = self.cfg.kv_cache_shape
        zeros = jnp.zeros((batch, capacity, num_kv, head_dim), self.dtype)
        empty = [(zeros, zeros) for _ in range(self.cfg.num_layers)]
        positions = positions_from_mask(attention_mask)
        mask = causal_mask(attention_mask, capacity)
        hidden, caches = self.backbone(input_ids, positions, mask, empty, 0)
        logits = self.lm_logits(heads_lib.gather_last(hidden, attention_mask))
        cache = {
            "keys": tuple(k for k, _ in caches),
            "values": tuple(v for _, v in caches),
            "valid": padded_mask(attention_mask, capacity),
            "slot": jnp.full((batch,), prompt_len, jnp.int32),
            "position": jnp.sum(attention_mask > 0, axis=-1).astype(jnp.int32),
        }
        return logits, cache

    def decode_step(self, token_ids, cache):
        """Feed one token per row ``[B]``; returns next-token logits ``[B, V]`` and the cache."""
        self._check_lm()
        slot = cache["slot"][0]
        valid = lax.dynamic_update_slice(
            cache["valid"], jnp.ones((token_ids.shape[0], 1), bool), (0, slot)
        )
        caches = list(zip(cache["keys"], cache["values"]))
        positions = cache["position"][:, None]
        mask = valid[:, None, :]  # [B, 1, S]: the new token sees every filled slot
        hidden, caches = self.backbone(token_ids[:, None], positions, mask, caches, slot)
        new_cache = {
            "keys": tuple(k for k, _ in caches),
            "values": tuple(v for _, v in caches),
            "valid": valid,
            "slot": cache["slot"] + 1,
            "position": cache["position"] + 1,
        }
        return self.lm_logits(hidden[:, 0]), new_cache


@dataclasses.dataclass(frozen=True)
class HFName:
    """One tensor: its Flax path, its HF name, and whether the HF layout is the transpose."""

    path: tuple[str, ...]
    name: str
    transpose: bool = False


def linear_names(path: tuple[str, ...], name: str, bias: bool) -> list[HFName]:
    """A ``torch.nn.Linear`` (weight ``[out, in]``) as a Flax ``Dense`` (kernel ``[in, out]``)."""
    names = [HFName((*path, "kernel"), f"{name}.weight", transpose=True)]
    if bias:
        names.append(HFName((*path, "bias"), f"{name}.bias"))
    return names


def head_names(cfg, head: str, token_cls_name: str = "score") -> list[HFName]:
    """Tensors of the heads (top-level names, outside the backbone prefix)."""
    names = []
    if head in ("lm", "lm_value") and not cfg.tie_word_embeddings:
        names += linear_names(("lm_head",), "lm_head", bias=False)
    if head in ("value", "lm_value"):
        names += linear_names(("value_head", "dense"), "value_head.dense", bias=True)
        names += linear_names(("value_head", "out"), "value_head.out", bias=True)
    if head == "token_cls":
        names += linear_names(("score",), token_cls_name, bias=True)
    if head == "seq_reg":
        names += linear_names(("score",), "score", bias=False)
    return names


def strip_prefix(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Drop the base-model prefix (``transformer.`` / ``model.``) from backbone tensor names."""
    return {k.removeprefix(prefix): v for k, v in tensors.items()}


def params_from_names(tensors: dict[str, np.ndarray], names: list[HFName]) -> dict:
    """Nested Flax params from HF tensors; errors name the first missing tensor."""
    missing = [n.name for n in names if n.name not in tensors]
    if missing:
        raise CheckpointFormatError(
            f"checkpoint lacks tensors {missing[:5]} (of {len(missing)} missing); "
            f"it has e.g. {sorted(tensors)[:5]}"
        )
    params: dict = {}
    for n in names:
        node = params
        for key in n.path[:-1]:
            node = node.setdefault(key, {})
        array = np.asarray(tensors[n.name])
        node[n.path[-1]] = array.T if n.transpose else array
    return params


def params_to_names(params, names: list[HFName], prefix: str, heads: list[HFName]) -> dict:
    """HF tensors from Flax params: backbone names get ``prefix``, head names stay top-level."""
    out = {}
    for n, top_level in [(n, False) for n in names] + [(n, True) for n in heads]:
        node = params
        for key in n.path:
            node = node[key]
        array = np.asarray(node)
        out[n.name if top_level else prefix + n.name] = array.T if n.transpose else array
    return out


def labels_config(num_labels: int) -> dict:
    return {
        "id2label": {str(i): f"LABEL_{i}" for i in range(num_labels)},
        "label2id": {f"LABEL_{i}": i for i in range(num_labels)},
    }
