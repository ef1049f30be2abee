"""Model outputs aligned to response positions, for any family and head.

Output ``[:, j]`` is the model's output *for emitting* response token ``j``: the decoder state
whose input is ``y_{j-1}`` (T5), or column ``P - 1 + j`` of ``[left-aligned prompt ; response]``
(decoder-only). Log-probs, entropies and values all use this alignment.
"""

from __future__ import annotations

import jax

from fgjax.models import Model
from fgjax.sequences import concat_prompt_response, shift_right


def response_outputs(
    model: Model,
    params,
    prompt_ids: jax.Array,
    prompt_mask: jax.Array,
    response_ids: jax.Array,
    response_mask: jax.Array,
    pad_id: int,
):
    """Head outputs for the response: ``[B, N, ...]`` (a tuple for ``lm_value``)."""
    n_new = response_ids.shape[1]
    if model.is_encoder_decoder:
        start_id = getattr(model.config, "decoder_start_token_id", pad_id)
        dec_ids, dec_mask = shift_right(response_ids, response_mask, start_id, pad_id)
        return model(params, prompt_ids, prompt_mask, dec_ids, dec_mask)
    ids, mask = concat_prompt_response(prompt_ids, prompt_mask, response_ids, response_mask, pad_id)
    outputs = model(params, ids, mask)
    start = prompt_ids.shape[1] - 1
    return jax.tree.map(lambda x: x[:, start : start + n_new], outputs)
