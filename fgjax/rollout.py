"""Sampling with a KV cache, compiled: static ``max_new_tokens``, early exit when all rows end.

Works for decoder-only models and T5 through the ``Model.start_decoding`` / ``decode_step``
pair. Each prompt is prefilled (decoder-only) or encoded (T5) once; its cache is then repeated
for the ``num_samples`` samples (the release encodes each prompt ``num_samples`` times).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from fgjax.models import Model

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int
    eos_token_id: int
    pad_token_id: int
    num_samples: int = 1  # samples per prompt
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    greedy: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if not self.greedy and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class Rollout:
    response_ids: jax.Array  # [B*n, N] int32, pad after EOS
    response_mask: jax.Array  # [B*n, N] int32, 1 up to and including EOS


def _sortable_keys(x: jax.Array) -> jax.Array:
    """float32 -> uint32 with the same order (flip negatives, then move the sign bit)."""
    bits = lax.bitcast_convert_type(x, jnp.int32)
    bits = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)
    return lax.bitcast_convert_type(bits, jnp.uint32) ^ jnp.uint32(0x80000000)


def _largest_key_reaching(keys: jax.Array, weights: jax.Array, target) -> jax.Array:
    """Per row, the largest key ``T`` with ``sum(weights[keys >= T]) >= target``, built bit by
    bit from the top (32 masked sums). Exact, and on CPU several times faster than the sort
    behind ``lax.top_k`` / ``jnp.sort`` over a vocabulary."""

    def try_bit(i, threshold):
        candidate = threshold | lax.shift_left(jnp.uint32(1), (31 - i).astype(jnp.uint32))
        mass = jnp.sum(jnp.where(keys >= candidate[..., None], weights, 0), axis=-1)
        return jnp.where(mass >= target, candidate, threshold)

    return lax.fori_loop(0, 32, try_bit, jnp.zeros(keys.shape[:-1], jnp.uint32))


def filter_logits(logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """Temperature, top-k and top-p (nucleus) filtering of ``[..., V]`` logits (float32).

    Ties with the k-th logit are kept (as Hugging Face's ``TopKLogitsWarper`` does); top-p keeps
    the smallest set of highest logits whose probability reaches ``top_p`` (the top token
    always stays)."""
    logits = logits.astype(jnp.float32) / cfg.temperature
    if not (cfg.top_k and cfg.top_k < logits.shape[-1]) and cfg.top_p >= 1.0:
        return logits
    keys = _sortable_keys(logits)
    if cfg.top_k and cfg.top_k < logits.shape[-1]:
        kth = _largest_key_reaching(keys, jnp.int32(1), cfg.top_k)
        logits = jnp.where(keys < kth[..., None], NEG_INF, logits)
    if cfg.top_p < 1.0:
        probs = jax.nn.softmax(logits, axis=-1)
        threshold = _largest_key_reaching(keys, probs, jnp.float32(cfg.top_p))
        logits = jnp.where(keys < threshold[..., None], NEG_INF, logits)
    return logits


def next_token(logits: jax.Array, key: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """One token per row from ``[B, V]`` logits."""
    if cfg.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, filter_logits(logits, cfg), axis=-1).astype(jnp.int32)


def repeat_batch(tree, n: int):
    """Repeat every leaf ``n`` times along axis 0 (rows ``[p0 s0, p0 s1, ..., p1 s0, ...]``)."""
    if n == 1:
        return tree
    return jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), tree)


def sample(
    model: Model,
    params,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    key: jax.Array,
    cfg: SamplingConfig,
) -> Rollout:
    """Sample ``cfg.num_samples`` responses per prompt. Prompts ``[B, P]``, left or right padded.

    Returns rows grouped by prompt: row ``b * n + s`` is sample ``s`` of prompt ``b``.
    """
    logits, cache = model.start_decoding(params, prompt_ids, prompt_mask, cfg.max_new_tokens)
    logits, cache = repeat_batch((logits, cache), cfg.num_samples)
    rows = logits.shape[0]
    n_new = cfg.max_new_tokens
    tokens = jnp.full((rows, n_new), cfg.pad_token_id, jnp.int32)
    mask = jnp.zeros((rows, n_new), jnp.int32)
    done = jnp.zeros((rows,), bool)

    def emit(t, logits, key, tokens, mask, done):
        token = next_token(logits, jax.random.fold_in(key, t), cfg)
        token = jnp.where(done, cfg.pad_token_id, token)
        tokens = lax.dynamic_update_slice(tokens, token[:, None], (0, t))
        mask = lax.dynamic_update_slice(mask, (~done).astype(jnp.int32)[:, None], (0, t))
        return token, tokens, mask, done | (token == cfg.eos_token_id)

    token, tokens, mask, done = emit(0, logits, key, tokens, mask, done)

    def cond(carry):
        t, _, _, _, _, done = carry
        return (t < n_new) & ~jnp.all(done)

    def body(carry):
        t, token, cache, tokens, mask, done = carry
        logits, cache = model.decode_step(params, token, cache)
        token, tokens, mask, done = emit(t, logits, key, tokens, mask, done)
        return t + 1, token, cache, tokens, mask, done

    carry = (jnp.int32(1), token, cache, tokens, mask, done)
    _, _, _, tokens, mask, _ = lax.while_loop(cond, body, carry)
    return Rollout(response_ids=tokens, response_mask=mask)
