"""Tiny random `transformers` models and the checks shared by the decoder-family tests.

Every model is made here with ``torch.manual_seed`` and saved as safetensors to a temporary
directory; nothing is downloaded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import linen as nn

from fgjax import models, sharding
from fgjax.models import partitioning
from fgjax.models.decoder_common import positions_from_mask

PAD_ID = 0
VOCAB = 128  # divisible by the tensor axis of the sharded test


def make_hf(model_cls, config, path, seed: int = 0, max_shard_size: str | None = None):
    """Build ``model_cls(config)`` with every parameter perturbed (so norms and biases are not
    the ones/zeros of a fresh init and a mix-up in the name map shows), save it, return it."""
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = model_cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.save_pretrained(str(path), safe_serialization=True, **kwargs)
    return model


def padded_batch(seed: int, lengths=(9, 5, 1, 7), width: int = 10, left: bool = False):
    """Token ids and mask ``[B, width]`` with real tokens in ``[1, VOCAB)`` and pad id 0."""
    rng = np.random.default_rng(seed)
    ids = np.full((len(lengths), width), PAD_ID, np.int32)
    mask = np.zeros((len(lengths), width), np.int32)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if left else slice(0, n)
        ids[row, cols] = rng.integers(1, VOCAB, n)
        mask[row, cols] = 1
    return ids, mask


def hf_outputs(model, ids, mask, explicit_positions: bool = False) -> np.ndarray:
    """``model(...).logits`` as float32 NumPy; optionally with our mask-derived position ids."""
    kwargs = {}
    if explicit_positions:
        kwargs["position_ids"] = torch.from_numpy(np.array(positions_from_mask(mask)))
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids).long(),
            attention_mask=torch.from_numpy(mask).long(),
            **kwargs,
        )
    return out.logits.float().numpy()


def masked_max_diff(ours, theirs, mask) -> float:
    """Max |ours - theirs| over real positions (``mask [B, T]``) of ``[B, T, ...]`` outputs."""
    diff = np.abs(np.asarray(ours, np.float32) - np.asarray(theirs, np.float32))
    diff = diff.reshape(diff.shape[:2] + (-1,)).max(axis=-1)
    return float(np.where(np.asarray(mask) > 0, diff, 0.0).max())


def head_error(head: str, ours, expected, mask) -> float:
    """Max abs error of an ``lm`` / ``token_cls`` (``[B, T, V|L]``, real positions) or
    ``seq_reg`` (``[B]`` vs HF ``[B, 1]``) output."""
    ours = np.asarray(ours)
    if head in ("lm", "token_cls"):
        return masked_max_diff(ours, expected, mask)
    assert ours.shape == (expected.shape[0],), ours.shape
    return float(np.abs(ours - expected[:, 0]).max())


def check_export(model, params, hf_cls, path) -> float:
    """Perturb ``params`` (so zero biases / unit norms would reveal a name-map mix-up), write
    them with ``save_pretrained``, load with ``hf_cls.from_pretrained`` (no missing or
    unexpected tensors allowed) and compare outputs. Returns the max abs error."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(11), len(leaves))
    params = treedef.unflatten(
        [x + 0.05 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    )
    models.save_pretrained(model, params, str(path))
    hf_model, info = hf_cls.from_pretrained(str(path), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    ids, mask = padded_batch(seed=4)
    expected = hf_outputs(hf_model.eval(), ids, mask)
    return head_error(model.head, model(params, ids, mask), expected, mask)


def hf_param_count(model) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


def check_kv_cache(model, params, left: bool) -> float:
    """Prefill left- or right-padded prompts, feed a fixed continuation ``[B, N]`` token by token
    through the cache and compare each step's logits with the full forward pass over
    ``[prompt ; continuation]`` at the same columns. Returns the max abs error."""
    prompt_ids, prompt_mask = padded_batch(seed=7, lengths=(6, 3, 1), width=6, left=left)
    continuation = np.random.default_rng(8).integers(1, VOCAB, (3, 5)).astype(np.int32)
    n_new = continuation.shape[1]
    full_ids = np.concatenate([prompt_ids, continuation], axis=1)
    full_mask = np.concatenate([prompt_mask, np.ones_like(continuation)], axis=1)
    full_logits = np.asarray(jax.jit(model)(params, full_ids, full_mask))

    start = jax.jit(model.start_decoding, static_argnums=3)
    step = jax.jit(model.decode_step)
    logits, cache = start(params, prompt_ids, prompt_mask, n_new)
    batch = prompt_ids.shape[0]
    for leaf in jax.tree.leaves(cache):
        assert leaf.shape[0] == batch, f"cache leaf {leaf.shape} is not batch-major"
    last_prompt = np.max(np.where(prompt_mask > 0, np.arange(prompt_ids.shape[1]), 0), axis=1)
    errors = [np.abs(np.asarray(logits) - full_logits[np.arange(batch), last_prompt]).max()]
    for t in range(n_new - 1):
        logits, cache = step(params, jnp.asarray(continuation[:, t]), cache)
        column = prompt_ids.shape[1] + t
        errors.append(np.abs(np.asarray(logits) - full_logits[:, column]).max())
    return float(max(errors))


def relative_error(ours, reference) -> float:
    """max |a - b| / max |b|."""
    ours = np.asarray(ours, np.float32)
    reference = np.asarray(reference, np.float32)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def check_bf16(path) -> float:
    """Relative error of a bfloat16 load against float32 (real positions only)."""
    ids, mask = padded_batch(seed=9)
    model32, params32 = models.load_pretrained(str(path))
    model16, params16 = models.load_pretrained(str(path), dtype=jnp.bfloat16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params16))
    keep = np.asarray(mask)[..., None] > 0
    ref = np.where(keep, np.asarray(model32(params32, ids, mask)), 0.0)
    low = np.where(keep, np.asarray(model16(params16, ids, mask), np.float32), 0.0)
    return relative_error(low, ref)


def check_partitioning(model) -> None:
    """Every parameter maps to mesh axes; a rules table without ``embed`` raises."""
    specs = model.mesh_specs()
    leaves = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert len(leaves) == len(jax.tree.leaves(model.abstract_params()))
    logical = jax.tree.leaves(
        model.logical_specs(), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )
    assert all(len(spec) >= 1 and all(name is not None for name in spec) for spec in logical)
    rules = tuple(r for r in partitioning.DEFAULT_RULES if r[0] != partitioning.EMBED)
    try:
        model.mesh_specs(rules)
    except partitioning.UnmappedLogicalAxisError as e:
        assert "embed" in str(e)
    else:
        raise AssertionError("mesh_specs accepted a parameter axis without a rule")


def check_sharded_forward(model, params) -> float:
    """Max abs difference between the forward pass on a ``data=2, fsdp=2, tensor=2`` mesh (params
    sharded by the logical rules, activation constraints active) and on one device."""
    ids, mask = padded_batch(seed=10, lengths=(9, 5, 1, 7, 3, 10, 2, 8))
    expected = np.asarray(model(params, ids, mask))
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    sharded = sharding.shard_params(params, sharding.param_shardings(model, mesh))
    batch = sharding.batch_sharding(mesh)
    with jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.DEFAULT_RULES):
        out = jax.jit(model)(sharded, jax.device_put(ids, batch), jax.device_put(mask, batch))
    return masked_max_diff(out, expected, mask)
