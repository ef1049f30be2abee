"""GPT-2 against `transformers` PyTorch on tiny random checkpoints."""

import hf_fixtures as fx
import jax
import numpy as np
import pytest
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
)

from fgjax import models

TOL = 1e-4


def tiny_config(**overrides) -> GPT2Config:
    kwargs = dict(
        vocab_size=fx.VOCAB, n_positions=64, n_embd=48, n_layer=2, n_head=4,
        pad_token_id=fx.PAD_ID, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    kwargs.update(overrides)
    return GPT2Config(**kwargs)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2_lm")
    return path, fx.make_hf(GPT2LMHeadModel, tiny_config(), path)


@pytest.fixture(scope="module")
def lm(lm_dir):
    return models.load_pretrained(str(lm_dir[0]))


@pytest.mark.parametrize("left", [False, True])
def test_lm_logits_match_transformers(lm_dir, lm, left):
    _, hf_model = lm_dir
    model, params = lm
    ids, mask = fx.padded_batch(seed=1, left=left)
    # Left padding: HF needs our mask-derived positions explicitly (learned absolute positions).
    expected = fx.hf_outputs(hf_model, ids, mask, explicit_positions=left)
    err = fx.masked_max_diff(model(params, ids, mask), expected, mask)
    n_params = models.param_count(params)
    print(f"gpt2 lm ({'left' if left else 'right'} padded): max abs err {err:.2e}, "
          f"{n_params} parameters")  # fmt: skip
    assert n_params == fx.hf_param_count(hf_model)
    assert err <= TOL


@pytest.mark.parametrize(
    "head, hf_cls, num_labels",
    [("token_cls", GPT2ForTokenClassification, 3), ("seq_reg", GPT2ForSequenceClassification, 1)],
)
def test_classification_heads_match_transformers(tmp_path, head, hf_cls, num_labels):
    hf_model = fx.make_hf(hf_cls, tiny_config(num_labels=num_labels), tmp_path, seed=2)
    model, params = models.load_pretrained(str(tmp_path), head=head)
    ids, mask = fx.padded_batch(seed=3)
    err = fx.head_error(head, model(params, ids, mask), fx.hf_outputs(hf_model, ids, mask), mask)
    print(f"gpt2 {head}: max abs err {err:.2e}, {models.param_count(params)} parameters")
    assert models.param_count(params) == fx.hf_param_count(hf_model)
    assert err <= TOL


@pytest.mark.parametrize(
    "head, hf_cls",
    [
        ("lm", GPT2LMHeadModel),
        ("token_cls", GPT2ForTokenClassification),
        ("seq_reg", GPT2ForSequenceClassification),
    ],
)
def test_save_pretrained_round_trips_through_transformers(tmp_path, head, hf_cls):
    config = tiny_config(num_labels=1 if head == "seq_reg" else 3)
    model, params = models.init_model(config, jax.random.key(0), head=head)
    err = fx.check_export(model, params, hf_cls, tmp_path)
    print(f"gpt2 {head} export -> transformers: max abs err {err:.2e}")
    assert err <= TOL


def test_value_heads_round_trip_through_our_loader(tmp_path):
    model, params = models.init_model(tiny_config(), jax.random.key(1), head="lm_value")
    models.save_pretrained(model, params, str(tmp_path))
    loaded, loaded_params = models.load_pretrained(str(tmp_path), head="lm_value")
    ids, mask = fx.padded_batch(seed=5)
    logits, values = model(params, ids, mask)
    logits2, values2 = loaded(loaded_params, ids, mask)
    assert values.shape == ids.shape
    np.testing.assert_allclose(np.asarray(logits2), np.asarray(logits), atol=1e-6)
    np.testing.assert_allclose(np.asarray(values2), np.asarray(values), atol=1e-6)
    # The value head alone reads the same tensors.
    value_model, value_params = models.load_pretrained(str(tmp_path), head="value")
    np.testing.assert_allclose(
        np.asarray(value_model(value_params, ids, mask)), np.asarray(values), atol=1e-6
    )


def test_sharded_checkpoint_loads(tmp_path, lm):
    torch_model = fx.make_hf(GPT2LMHeadModel, tiny_config(), tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    model, params = models.load_pretrained(str(tmp_path))
    ids, mask = fx.padded_batch(seed=6)
    err = fx.masked_max_diff(model(params, ids, mask), fx.hf_outputs(torch_model, ids, mask), mask)
    assert err <= TOL


@pytest.mark.parametrize("left", [False, True])
def test_kv_cache_decoding_matches_full_forward(lm, left):
    model, params = lm
    err = fx.check_kv_cache(model, params, left)
    print(f"gpt2 kv cache ({'left' if left else 'right'} padded): max abs err {err:.2e}")
    assert err <= 1e-5


def test_bfloat16_close_to_float32(lm_dir):
    err = fx.check_bf16(lm_dir[0])
    print(f"gpt2 bf16 vs f32: relative err {err:.2e}")
    assert err <= 2e-2


def test_sharded_forward_matches_single_device(lm):
    err = fx.check_sharded_forward(*lm)
    print(f"gpt2 sharded (data 2, fsdp 2, tensor 2) vs 1 device: max abs err {err:.2e}")
    assert err <= 1e-5


def test_logical_partitioning(lm):
    fx.check_partitioning(lm[0])
    fx.check_partitioning(lm[0].with_head("lm_value"))


def test_unsupported_config_is_rejected(tmp_path):
    config = tiny_config(activation_function="relu").to_dict()
    with pytest.raises(ValueError, match="activation_function"):
        models.init_model(config, jax.random.key(0))
