"""Dense ``[B, T]`` rewards from reward-model outputs on response positions, and their sum.

Array code only (no host work): usable inside the compiled PPO step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax
import jax
import jax.numpy as jnp

from fgjax.models.heads import last_token_index
from fgjax.rewards.spec import RewardModelSpec


@flax.struct.dataclass
class ModelReward:
    """One reward model's contribution (unweighted) and what its metrics need."""

    dense: jax.Array  # [B, T] float32
    n_segments: jax.Array | None = None  # [B] int32, token_cls: segments scored
    n_errors: jax.Array | None = None  # [B] int32, token_cls: segments called errors
    score: jax.Array | None = None  # [B] float32, seq_reg: (score - mean) / std


def token_classification_rewards(
    label_logits: jax.Array,
    segment_end_mask: jax.Array,
    positive: float,
    negative: float,
    error_label: int,
    ok_label: int | None = None,
) -> ModelReward:
    """``label_logits [B, T, L]`` read at ``segment_end_mask [B, T]`` (1 on the last token of
    each segment, 0 elsewhere and on padding) -> ``positive`` where the model predicts no error,
    ``negative`` where it does, 0 elsewhere.

    Error: ``argmax == error_label`` over all labels, or with ``ok_label`` set,
    ``logit[error] >= logit[ok]`` (the release's two-way argmax, ties going to the error).
    """
    logits = label_logits.astype(jnp.float32)
    if ok_label is None:
        is_error = jnp.argmax(logits, axis=-1) == error_label
    else:
        is_error = logits[..., error_label] >= logits[..., ok_label]
    ends = segment_end_mask > 0
    dense = jnp.where(ends, jnp.where(is_error, negative, positive), 0.0).astype(jnp.float32)
    return ModelReward(
        dense=dense,
        n_segments=jnp.sum(ends, axis=1, dtype=jnp.int32),
        n_errors=jnp.sum(ends & is_error, axis=1, dtype=jnp.int32),
    )


def sequence_rewards(
    scores: jax.Array,
    response_mask: jax.Array,
    mean: float,
    std: float,
    scale: float,
    bias: float,
) -> ModelReward:
    """``scores [B]`` -> ``(score - mean) / std * scale + bias`` on the last real token of
    ``response_mask [B, T]``, zeros elsewhere (an empty response gets nothing)."""
    normalised = (scores.astype(jnp.float32) - mean) / std
    last = last_token_index(response_mask)
    at_last = jnp.arange(response_mask.shape[1])[None, :] == last[:, None]
    nonempty = jnp.any(response_mask > 0, axis=1, keepdims=True)
    value = (normalised * scale + bias)[:, None]
    dense = jnp.where(at_last & nonempty, value, 0.0).astype(jnp.float32)
    return ModelReward(dense=dense, score=normalised)


def combine_rewards(
    rewards: Mapping[str, ModelReward], specs: Sequence[RewardModelSpec]
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``sum(spec.weight * rewards[spec.name].dense)`` -> ``[B, T]``, and scalar metrics:

    * ``reward/<name>``: mean over responses of the model's summed (unweighted) reward;
    * token_cls: ``reward/<name>_ok_ratio`` = error-free segments / segments over the batch
      (count-weighted, as the release's relevance / factuality ratios), and
      ``reward/<name>_segments`` = mean segments per response;
    * seq_reg: ``reward/<name>_score`` = mean ``(score - mean) / std``.
    """
    if not specs:
        raise ValueError("combine_rewards needs at least one reward model spec")
    total = None
    metrics = {}
    for spec in specs:
        if spec.name not in rewards:
            raise KeyError(f"no reward computed for reward model {spec.name!r}")
        out = rewards[spec.name]
        weighted = spec.weight * out.dense
        total = weighted if total is None else total + weighted
        metrics[f"reward/{spec.name}"] = jnp.mean(jnp.sum(out.dense, axis=1))
        if out.n_segments is not None:
            segments = jnp.sum(out.n_segments).astype(jnp.float32)
            ok = segments - jnp.sum(out.n_errors).astype(jnp.float32)
            # Every non-empty response has a segment (its last token closes one).
            metrics[f"reward/{spec.name}_ok_ratio"] = ok / jnp.maximum(segments, 1.0)
            metrics[f"reward/{spec.name}_segments"] = jnp.mean(out.n_segments.astype(jnp.float32))
        if out.score is not None:
            metrics[f"reward/{spec.name}_score"] = jnp.mean(out.score)
    return total, metrics
