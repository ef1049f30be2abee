"""Fused reward models: run each RM on ``[its own prompt ; the policy response]`` inside the
compiled step and map its outputs back onto response positions.

Each row is packed as the text would be tokenised: the RM prompt's real tokens, then the
response's real tokens, then padding (``pack_prompt_response``). Decoder-only and T5 models see
exactly the positions (and, for T5, relative distances) of an unpadded sequence; outputs for
response token ``j`` are read at column ``prompt_length + j`` by one gather.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fgjax.models import Model, load_pretrained
from fgjax.rewards.dense import (
    ModelReward,
    combine_rewards,
    sequence_rewards,
    token_classification_rewards,
)
from fgjax.rewards.spec import RewardModelSpec, check_unique_names
from fgjax.sequences import shift_right

# segment_fn(response_ids [R, N], response_mask [R, N]) -> {"subsentence": [R, N], "sentence": ...}
SegmentFn = Callable[[jax.Array, jax.Array], Mapping[str, jax.Array]]


def pack_prompt_response(
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    response_ids: jax.Array,
    response_mask: jax.Array,
    pad_id: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``[B, P] + [B, N]`` -> ``(ids [B, P + N], mask [B, P + N], prompt_lengths [B])`` with
    each row ``[prompt real tokens ; response real tokens ; pad]``.

    The prompt may be right- or left-padded; the response's real tokens form a prefix.
    """
    prompt_mask = (prompt_mask > 0).astype(jnp.int32)
    # Stable sort, real tokens first: compacts the prompt to the left keeping its order.
    order = jnp.argsort(1 - prompt_mask, axis=1, stable=True)
    prompt_ids = jnp.take_along_axis(prompt_ids, order, axis=1)
    prompt_lengths = jnp.sum(prompt_mask, axis=1)
    p, n = prompt_ids.shape[1], response_ids.shape[1]
    columns = jnp.arange(p + n)[None, :]
    in_prompt = columns < prompt_lengths[:, None]
    response_pos = columns - prompt_lengths[:, None]
    response_col = jnp.clip(response_pos, 0, n - 1)
    in_response = (
        (response_pos >= 0)
        & (response_pos < n)
        & (jnp.take_along_axis(response_mask, response_col, axis=1) > 0)
    )
    from_prompt = jnp.take_along_axis(prompt_ids, jnp.clip(columns, 0, p - 1), axis=1)
    from_response = jnp.take_along_axis(response_ids, response_col, axis=1)
    ids = jnp.where(in_prompt, from_prompt, jnp.where(in_response, from_response, pad_id))
    mask = (in_prompt | in_response).astype(jnp.int32)
    return ids.astype(response_ids.dtype), mask, prompt_lengths


def rm_outputs_on_response(
    model: Model,
    params,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    response_ids: jax.Array,
    response_mask: jax.Array,
    pad_id: int,
) -> jax.Array:
    """A reward model on its packed input: ``token_cls`` -> label logits on response positions
    ``[B, N, L]``; ``seq_reg`` -> scores ``[B]`` (needs ``num_labels == 1``).

    T5: ``token_cls`` is encoder-only; ``seq_reg`` decodes the packed sequence shifted right and
    pools at its last real token (Hugging Face's convention for a row ending in EOS)."""
    ids, mask, prompt_lengths = pack_prompt_response(
        prompt_ids, prompt_mask, response_ids, response_mask, pad_id
    )
    if model.head == "token_cls":
        logits = model(params, ids, mask)
        n = response_ids.shape[1]
        cols = jnp.clip(prompt_lengths[:, None] + jnp.arange(n)[None, :], 0, ids.shape[1] - 1)
        return jnp.take_along_axis(logits, cols[..., None], axis=1)
    if model.head == "seq_reg":
        if model.is_encoder_decoder:
            start_id = getattr(model.config, "decoder_start_token_id", pad_id)
            decoder_ids, _ = shift_right(ids, mask, start_id, pad_id)
            scores = model(params, ids, mask, decoder_ids, mask)
        else:
            scores = model(params, ids, mask)
        if scores.ndim != 1:
            raise ValueError(
                f"a seq_reg reward model must output one score per row ([B]); got shape "
                f"{scores.shape} (num_labels must be 1)"
            )
        return scores
    raise ValueError(f"reward models have head 'token_cls' or 'seq_reg', not {model.head!r}")


def score_model(
    spec: RewardModelSpec,
    model: Model,
    params,
    batch: Mapping[str, jax.Array],
    response_ids: jax.Array,
    response_mask: jax.Array,
    segment_masks: Mapping[str, jax.Array],
    pad_id: int,
) -> ModelReward:
    """One reward model's dense reward ``[R, N]`` for ``R = B * num_samples`` responses to the
    ``B`` prompts of ``batch`` (rows ``[p0 s0, p0 s1, ..., p1 s0, ...]``, as the sampler orders
    them)."""
    if model.head != spec.kind:
        raise ValueError(
            f"reward model {spec.name!r}: spec kind {spec.kind!r}, model head {model.head!r}"
        )
    ids_key, mask_key = spec.input_keys
    for key in (ids_key, mask_key):
        if key not in batch:
            raise KeyError(f"reward model {spec.name!r} reads batch[{key!r}], which is missing")
    prompt_ids, prompt_mask = batch[ids_key], batch[mask_key]
    rows, prompts = response_ids.shape[0], prompt_ids.shape[0]
    if rows % prompts:
        raise ValueError(
            f"reward model {spec.name!r}: {rows} responses is not a multiple of the "
            f"{prompts} prompts in batch[{ids_key!r}]"
        )
    samples = rows // prompts
    prompt_ids = jnp.repeat(prompt_ids, samples, axis=0)
    prompt_mask = jnp.repeat(prompt_mask, samples, axis=0)
    outputs = rm_outputs_on_response(
        model, params, prompt_ids, prompt_mask, response_ids, response_mask, pad_id
    )
    if spec.kind == "seq_reg":
        return sequence_rewards(outputs, response_mask, spec.mean, spec.std, spec.scale, spec.bias)
    if spec.level not in segment_masks:
        raise KeyError(
            f"reward model {spec.name!r} needs the {spec.level!r} segment-end mask; "
            f"have {sorted(segment_masks)}"
        )
    segment_ends = segment_masks[spec.level] * (response_mask > 0)
    return token_classification_rewards(
        outputs, segment_ends, spec.positive, spec.negative, spec.error_label, spec.ok_label
    )


def score_responses(
    models: Mapping[str, Model],
    params: Mapping[str, Any],
    specs: Sequence[RewardModelSpec],
    batch: Mapping[str, jax.Array],
    response_ids: jax.Array,
    response_mask: jax.Array,
    segment_masks: Mapping[str, jax.Array],
    pad_id: int,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """All fused reward models -> the weighted dense reward ``[R, N]`` and metrics (see
    ``combine_rewards``). ``models`` and ``params`` are keyed by spec name; inside ``jax.jit``
    close over ``models`` (static) and pass ``params``."""
    check_unique_names(specs)
    rewards = {
        spec.name: score_model(
            spec,
            models[spec.name],
            params[spec.name],
            batch,
            response_ids,
            response_mask,
            segment_masks,
            pad_id,
        )
        for spec in specs
    }
    return combine_rewards(rewards, specs)


def make_reward_fn(
    models: Mapping[str, Model],
    specs: Sequence[RewardModelSpec],
    segment_fn: SegmentFn,
    pad_id: int,
):
    """The trainer's ``reward_fn(reward_params, batch, response_ids, response_mask) ->
    (dense [R, N], metrics)``, with ``reward_params`` keyed by spec name."""
    check_unique_names(specs)
    missing = [s.name for s in specs if s.name not in models]
    if missing:
        raise ValueError(f"no model given for reward models {missing}")
    specs = tuple(specs)

    def reward_fn(reward_params, batch, response_ids, response_mask):
        segment_masks = segment_fn(response_ids, response_mask)
        return score_responses(
            models, reward_params, specs, batch, response_ids, response_mask, segment_masks, pad_id
        )

    return reward_fn


def load_reward_models(specs: Sequence[RewardModelSpec], dtype=jnp.float32):
    """``({name: Model}, {name: params})`` from each spec's ``checkpoint`` (head = its kind)."""
    models, params = {}, {}
    for spec in specs:
        if not spec.checkpoint:
            raise ValueError(f"reward model {spec.name!r} has no checkpoint path")
        models[spec.name], params[spec.name] = load_pretrained(spec.checkpoint, spec.kind, dtype)
    return models, params
