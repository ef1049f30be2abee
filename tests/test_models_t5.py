"""T5 v1.0 (ReLU, tied, scaled) and v1.1 (gated-GELU, untied) against ``transformers`` PyTorch
on tiny random checkpoints built here; heads, export, KV-cache decoding, bfloat16, sharding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import linen as nn
from jax.sharding import PartitionSpec

from fgjax import rollout, sharding
from fgjax.models import (
    HEADS,
    build_model,
    init_model,
    load_pretrained,
    param_count,
    save_pretrained,
)
from fgjax.models.hf_io import CheckpointFormatError, read_config, read_tensors, write_checkpoint
from fgjax.models.partitioning import DEFAULT_RULES
from fgjax.models.t5_layers import relative_position_bucket

BASE = dict(
    vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0,
    decoder_start_token_id=0,
)  # fmt: skip
VARIANTS = {
    # Distances up to 29 > max_distance reach the clamped far buckets in both stacks.
    "v1_0": dict(
        feed_forward_proj="relu", tie_word_embeddings=True, num_decoder_layers=3,
        relative_attention_num_buckets=16, relative_attention_max_distance=24,
    ),  # fmt: skip
    "v1_1": dict(
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=8, relative_attention_max_distance=20,
    ),  # fmt: skip
}
ENC_LEN, DEC_LEN = 30, 26
PAD, EOS = 0, 1


def hf_config(variant: str, **kwargs) -> transformers.T5Config:
    return transformers.T5Config(**BASE, **VARIANTS[variant], **kwargs)


def make_hf(cls, config, seed: int = 0):
    """A random HF model; relative biases enlarged so that a wrong bucket changes the logits."""
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "relative_attention_bias" in name:
                param.mul_(5.0)
        if getattr(model, "lm_head", None) is not None and not config.scale_decoder_outputs:
            # transformers 5 ties lm_head to shared even for v1.1; a real v1.1 has its own.
            head = torch.randn_like(model.lm_head.weight) * config.d_model**-0.5
            model.lm_head.weight = torch.nn.Parameter(head)
    return model


def hf_param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # shared tensors counted once


def encoder_batch(seed: int = 0, batch: int = 3):
    """Row 0 full, row 1 right-padded, row 2 left-padded ``[B, ENC_LEN]``; no EOS inside."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, BASE["vocab_size"], (batch, ENC_LEN))
    mask = np.ones_like(ids)
    mask[1, 19:] = 0
    mask[2, :8] = 0
    return np.where(mask > 0, ids, PAD), mask


def decoder_batch(seed: int = 1, batch: int = 3):
    """Start token then random tokens ``[B, DEC_LEN]``; rows 1 and 2 right-padded."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, BASE["vocab_size"], (batch, DEC_LEN))
    ids[:, 0] = BASE["decoder_start_token_id"]
    mask = np.ones_like(ids)
    mask[1, 17:] = 0
    mask[2, 6:] = 0
    return np.where(mask > 0, ids, PAD), mask


def align(ids, mask, side: str):
    """The same rows with their real tokens moved to the left (``side="right"`` padding) or to
    the right (``side="left"``)."""
    out_ids, out_mask = np.full_like(ids, PAD), np.zeros_like(mask)
    for row, (r, m) in enumerate(zip(ids, mask)):
        tokens = r[m > 0]
        cols = slice(0, len(tokens)) if side == "right" else slice(len(r) - len(tokens), None)
        out_ids[row, cols], out_mask[row, cols] = tokens, 1
    return out_ids, out_mask


def torch_long(x):
    return torch.tensor(np.asarray(x), dtype=torch.long)


def max_masked_diff(ours, theirs, mask) -> float:
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))
    return float(diff[np.asarray(mask) > 0].max())


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def lm_checkpoint(request, tmp_path_factory):
    """``(variant, path, hf_model)`` for a saved ``T5ForConditionalGeneration``."""
    variant = request.param
    model = make_hf(transformers.T5ForConditionalGeneration, hf_config(variant))
    path = str(tmp_path_factory.mktemp(f"t5_{variant}"))
    model.save_pretrained(path)
    return variant, path, model


def hf_lm_logits(model, enc, enc_mask, dec, dec_mask) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=torch_long(enc),
            attention_mask=torch_long(enc_mask),
            decoder_input_ids=torch_long(dec),
            decoder_attention_mask=torch_long(dec_mask),
        )
    return out.logits.numpy()


# Compiled once per (model, shapes) for the whole file: equal models hit the same cache.
@functools.partial(jax.jit, static_argnums=0)
def forward(model, params, *inputs):
    return model(params, *inputs)


@functools.partial(jax.jit, static_argnums=(0, 4))
def start_decoding(model, params, input_ids, attention_mask, max_new_tokens):
    return model.start_decoding(params, input_ids, attention_mask, max_new_tokens)


@functools.partial(jax.jit, static_argnums=0)
def decode_step(model, params, token_ids, cache):
    return model.decode_step(params, token_ids, cache)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (16, 24), (8, 20), (32, 64)])
def test_relative_position_bucket_matches_hf(bidirectional, num_buckets, max_distance):
    relative = np.arange(-400, 401)
    theirs = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.tensor(relative), bidirectional, num_buckets, max_distance
    ).numpy()
    ours = relative_position_bucket(
        jnp.asarray(relative, jnp.int32),
        bidirectional=bidirectional,
        num_buckets=num_buckets,
        max_distance=max_distance,
    )
    np.testing.assert_array_equal(np.asarray(ours), theirs)


def test_lm_parity_with_padding(lm_checkpoint):
    variant, path, hf_model = lm_checkpoint
    model, params = load_pretrained(path, head="lm")
    assert model.config.tie_word_embeddings == (variant == "v1_0")
    assert model.config.scale_decoder_outputs == (variant == "v1_0")
    enc, enc_mask = encoder_batch()
    dec, dec_mask = decoder_batch()
    ours = forward(model, params, enc, enc_mask, dec, dec_mask)
    theirs = hf_lm_logits(hf_model, enc, enc_mask, dec, dec_mask)
    err = max_masked_diff(ours, theirs, dec_mask)
    print(f"T5 {variant} lm: params ours {param_count(params)} HF {hf_param_count(hf_model)}; "
          f"max |logits diff| {err:.2e} (logit scale {np.abs(theirs).max():.1f})")  # fmt: skip
    assert param_count(params) == hf_param_count(hf_model)
    assert err <= 1e-4


def test_save_pretrained_round_trip_through_transformers(lm_checkpoint, tmp_path):
    _, path, _ = lm_checkpoint
    model, params = load_pretrained(path, head="lm")
    save_pretrained(model, params, str(tmp_path))
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
    enc, enc_mask = encoder_batch(seed=5)
    dec, dec_mask = decoder_batch(seed=6)
    ours = forward(model, params, enc, enc_mask, dec, dec_mask)
    err = max_masked_diff(ours, hf_lm_logits(reloaded, enc, enc_mask, dec, dec_mask), dec_mask)
    print(f"T5 round trip via transformers: max |logits diff| {err:.2e}")
    assert err <= 1e-4
    # And back through our loader: identical parameters.
    _, params_again = load_pretrained(str(tmp_path), head="lm")
    jax.tree.map(np.testing.assert_array_equal, params_again, params)


def decode_all(model, params, enc, enc_mask, dec):
    """Logits ``[B, T, V]`` from ``start_decoding`` (position 0) and ``decode_step`` (1..T-1)."""
    logits, cache = start_decoding(model, params, enc, enc_mask, dec.shape[1])
    assert all(leaf.shape[0] == enc.shape[0] for leaf in jax.tree.leaves(cache))
    steps = [logits]
    for t in range(1, dec.shape[1]):
        logits, cache = decode_step(model, params, jnp.asarray(dec[:, t]), cache)
        steps.append(logits)
    return np.stack([np.asarray(x) for x in steps], axis=1), cache


@pytest.mark.parametrize("padding", ["right", "left"])
def test_kv_cache_decoding_matches_full_forward(lm_checkpoint, padding):
    _, path, _ = lm_checkpoint
    model, params = load_pretrained(path, head="lm")
    enc, enc_mask = encoder_batch(seed=2)
    enc, enc_mask = align(enc, enc_mask, padding)
    assert enc_mask[1:, -1 if padding == "right" else 0].sum() == 0
    dec, _ = decoder_batch(seed=3)
    dec_mask = np.ones_like(dec)
    full = forward(model, params, enc, enc_mask, dec, dec_mask)
    stepped, cache = decode_all(model, params, enc, enc_mask, dec)
    err = float(np.abs(stepped - np.asarray(full)).max())
    print(f"T5 KV cache ({padding}-padded prompts): max |step - full| {err:.2e}")
    assert err <= 1e-5
    np.testing.assert_array_equal(np.asarray(cache["index"]), DEC_LEN)


def test_repeated_cache_equals_repeated_prompts(lm_checkpoint):
    _, path, _ = lm_checkpoint
    model, params = load_pretrained(path, head="lm")
    enc, enc_mask = encoder_batch(seed=4)
    n, steps = 3, 5
    logits_a, cache_a = start_decoding(model, params, enc, enc_mask, steps + 1)
    logits_a, cache_a = jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), (logits_a, cache_a))
    logits_b, cache_b = start_decoding(
        model, params, np.repeat(enc, n, axis=0), np.repeat(enc_mask, n, axis=0), steps + 1
    )
    tokens = np.random.default_rng(7).integers(2, BASE["vocab_size"], (steps, enc.shape[0] * n))
    for token in tokens:
        np.testing.assert_allclose(logits_a, logits_b, atol=1e-5)
        logits_a, cache_a = decode_step(model, params, jnp.asarray(token), cache_a)
        logits_b, cache_b = decode_step(model, params, jnp.asarray(token), cache_b)
    np.testing.assert_allclose(logits_a, logits_b, atol=1e-5)


def test_greedy_sampling_matches_transformers(lm_checkpoint):
    """The project's sampler on our KV cache picks the same tokens as greedy decoding in HF."""
    _, path, hf_model = lm_checkpoint
    model, params = load_pretrained(path, head="lm")
    enc, enc_mask = encoder_batch(seed=9)
    cfg = rollout.SamplingConfig(
        max_new_tokens=DEC_LEN, eos_token_id=EOS, pad_token_id=PAD, greedy=True
    )
    sample = jax.jit(rollout.sample, static_argnums=(0, 5))
    ours = sample(model, params, jnp.asarray(enc), jnp.asarray(enc_mask), jax.random.key(0), cfg)
    # HF's greedy loop on full forward passes (its ``generate`` cache breaks when
    # num_decoder_layers != num_layers in transformers 5.23).
    dec = np.full((enc.shape[0], 1), BASE["decoder_start_token_id"])
    done = np.zeros(enc.shape[0], bool)
    for _ in range(DEC_LEN):
        logits = hf_lm_logits(hf_model, enc, enc_mask, dec, np.ones_like(dec))[:, -1]
        token = np.where(done, PAD, logits.argmax(-1))
        done |= token == EOS
        dec = np.concatenate([dec, token[:, None]], axis=1)
    theirs = dec[:, 1:]
    ids, mask = np.asarray(ours.response_ids), np.asarray(ours.response_mask)
    np.testing.assert_array_equal(np.where(mask > 0, ids, PAD), theirs)


def test_bfloat16_close_to_float32(lm_checkpoint):
    variant, path, _ = lm_checkpoint
    model32, params32 = load_pretrained(path, head="lm")
    model16, params16 = load_pretrained(path, head="lm", dtype=jnp.bfloat16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params16))
    enc, enc_mask = encoder_batch()
    dec, dec_mask = decoder_batch()
    ref = np.asarray(forward(model32, params32, enc, enc_mask, dec, dec_mask))
    low = forward(model16, params16, enc, enc_mask, dec, dec_mask)
    assert low.dtype == jnp.bfloat16
    rel = max_masked_diff(np.asarray(low.astype(jnp.float32)), ref, dec_mask) / np.abs(ref).max()
    print(f"T5 {variant} bfloat16 vs float32: max|a-b|/max|b| = {rel:.2e}")
    assert rel <= 2e-2


def test_token_classification_matches_hf(tmp_path):
    config = hf_config("v1_0", num_labels=3)
    hf_model = make_hf(transformers.T5ForTokenClassification, config, seed=1)
    hf_model.save_pretrained(str(tmp_path))
    model, params = load_pretrained(str(tmp_path), head="token_cls")
    assert "decoder" not in params  # HF's token classifier is encoder-only
    enc, enc_mask = encoder_batch()
    ours = forward(model, params, enc, enc_mask)
    with torch.no_grad():
        theirs = hf_model(input_ids=torch_long(enc), attention_mask=torch_long(enc_mask)).logits
    assert ours.shape == (3, ENC_LEN, 3)
    err = max_masked_diff(ours, theirs.numpy(), enc_mask)
    print(f"T5 token_cls: params ours {param_count(params)} HF {hf_param_count(hf_model)}; "
          f"max |logits diff| {err:.2e}")  # fmt: skip
    assert param_count(params) == hf_param_count(hf_model)
    assert err <= 1e-4


@pytest.mark.parametrize("num_labels", [1, 2])
def test_sequence_classification_matches_hf(tmp_path, num_labels):
    """HF pools the decoder state at the last EOS of ``input_ids`` with decoder inputs =
    ``input_ids`` shifted right; we pool at the last decoder-mask position. Right-padded rows
    ending with their one EOS make the two the same position."""
    config = hf_config("v1_1", num_labels=num_labels)
    hf_model = make_hf(transformers.T5ForSequenceClassification, config, seed=2)
    hf_model.save_pretrained(str(tmp_path))
    model, params = load_pretrained(str(tmp_path), head="seq_reg")
    rng = np.random.default_rng(8)
    lengths = np.array([ENC_LEN, 21, 9])
    mask = (np.arange(ENC_LEN)[None] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask > 0, rng.integers(2, BASE["vocab_size"], mask.shape), PAD)
    ids[np.arange(3), lengths - 1] = EOS
    dec = np.concatenate([np.full((3, 1), config.decoder_start_token_id), ids[:, :-1]], axis=1)
    ours = forward(model, params, ids, mask, dec, mask)
    with torch.no_grad():
        theirs = hf_model(
            input_ids=torch_long(ids),
            attention_mask=torch_long(mask),
            decoder_input_ids=torch_long(dec),
            decoder_attention_mask=torch_long(mask),
        ).logits.numpy()
    assert ours.shape == ((3,) if num_labels == 1 else (3, num_labels))
    err = float(np.abs(np.asarray(ours).reshape(theirs.shape) - theirs).max())
    print(f"T5 seq_reg (num_labels={num_labels}): params ours {param_count(params)} "
          f"HF {hf_param_count(hf_model)}; max |diff| {err:.2e}")  # fmt: skip
    assert param_count(params) == hf_param_count(hf_model)
    assert err <= 1e-4


def test_value_head_round_trips_through_our_loader(tmp_path):
    model, params = init_model(hf_config("v1_1"), jax.random.key(0), head="lm_value")
    save_pretrained(model, params, str(tmp_path))
    assert {"value_head.dense.weight", "value_head.out.bias"} <= set(read_tensors(str(tmp_path)))
    loaded_model, loaded = load_pretrained(str(tmp_path), head="lm_value")
    jax.tree.map(np.testing.assert_array_equal, loaded, params)
    enc, enc_mask = encoder_batch()
    dec, dec_mask = decoder_batch()
    logits, values = forward(loaded_model, loaded, enc, enc_mask, dec, dec_mask)
    assert logits.shape == (3, DEC_LEN, BASE["vocab_size"]) and values.shape == (3, DEC_LEN)
    value_model, value_params = load_pretrained(str(tmp_path), head="value")
    only_values = forward(value_model, value_params, enc, enc_mask, dec, dec_mask)
    np.testing.assert_allclose(only_values, values, atol=1e-6)
    # The LM half of an lm_value checkpoint is a plain T5ForConditionalGeneration.
    hf_model = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
    err = max_masked_diff(logits, hf_lm_logits(hf_model, enc, enc_mask, dec, dec_mask), dec_mask)
    assert err <= 1e-4


def test_tied_config_with_different_lm_head_is_an_error(lm_checkpoint, tmp_path):
    variant, path, _ = lm_checkpoint
    if variant != "v1_0":
        pytest.skip("only the tied variant can contradict its lm_head")
    tensors = read_tensors(path)
    tensors["lm_head.weight"] = tensors["shared.weight"] + 1.0
    write_checkpoint(str(tmp_path), read_config(path), tensors)
    with pytest.raises(CheckpointFormatError, match="lm_head.weight"):
        load_pretrained(str(tmp_path), head="lm")


def test_decoder_inputs_required_except_token_cls():
    model = build_model(hf_config("v1_0").to_dict(), head="lm")
    params = model.abstract_params()  # both errors come before any computation
    enc, enc_mask = encoder_batch()
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(params, enc, enc_mask)
    with pytest.raises(ValueError, match="'lm' or 'lm_value'"):
        model.with_head("value").start_decoding(params, enc, enc_mask, 4)


@pytest.mark.parametrize("head", HEADS)
def test_every_parameter_has_a_mesh_spec(head):
    config = hf_config("v1_1", num_labels=2)
    model, _ = init_model(config, jax.random.key(2), head=head)
    specs = model.mesh_specs()
    abstract = model.abstract_params()
    assert jax.tree.structure(specs, is_leaf=lambda x: isinstance(x, PartitionSpec)) == (
        jax.tree.structure(abstract)
    )
    assert specs["shared"]["embedding"] == PartitionSpec("tensor", "fsdp")
    attention = specs["encoder"]["blocks_0"]["self_attention"]
    assert attention["q"]["kernel"] == PartitionSpec("fsdp", "tensor")
    assert attention["o"]["kernel"] == PartitionSpec("tensor", "fsdp")
    assert specs["encoder"]["relative_attention_bias"]["embedding"] == PartitionSpec(None, None)


def test_sharded_forward_and_decoding_match_one_device():
    """FSDP x tensor parallel over 8 simulated devices, activation constraints active."""
    model, params = init_model(hf_config("v1_1"), jax.random.key(3), head="lm")
    enc, enc_mask = encoder_batch(batch=4)
    dec, dec_mask = decoder_batch(batch=4)
    inputs = (enc, enc_mask, dec, dec_mask)
    want = forward(model, params, *inputs)
    want_start, _ = start_decoding(model, params, enc, enc_mask, 4)

    mesh = sharding.make_mesh(data=1, fsdp=4, tensor=2)
    sharded = sharding.shard_params(params, sharding.param_shardings(model, mesh))
    with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
        batch = [jax.device_put(x, sharding.batch_sharding(mesh)) for x in inputs]
        got = forward(model, sharded, *batch)
        start, cache = start_decoding(model, sharded, *batch[:2], 4)
    # The cache stays batch-sharded: each of the 4 fsdp shards holds one row.
    assert cache["self_keys"][0].addressable_shards[0].data.shape[0] == 1
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(start, want_start, atol=1e-5)
