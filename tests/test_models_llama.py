"""Llama (GQA, untied) and Qwen2 (QKV bias, tied) against `transformers` PyTorch."""

import hf_fixtures as fx
import jax
import pytest
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaForTokenClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForSequenceClassification,
    Qwen2ForTokenClassification,
)

from fgjax import models

TOL = 1e-4
FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM, LlamaForTokenClassification,
              LlamaForSequenceClassification),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, Qwen2ForTokenClassification,
              Qwen2ForSequenceClassification),
}  # fmt: skip


def tiny_config(family: str, **overrides):
    """6 query heads sharing 2 KV heads; Llama untied with a non-default RoPE theta, Qwen2 tied
    (its q/k/v biases are built in)."""
    kwargs = dict(
        vocab_size=fx.VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-6, pad_token_id=fx.PAD_ID, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    if family == "llama":
        kwargs.update(tie_word_embeddings=False, rope_theta=500.0)
    else:
        kwargs.update(tie_word_embeddings=True)
    kwargs.update(overrides)
    return FAMILIES[family][0](**kwargs)


@pytest.fixture(scope="module", params=list(FAMILIES))
def lm_dir(request, tmp_path_factory):
    family = request.param
    path = tmp_path_factory.mktemp(f"{family}_lm")
    return family, path, fx.make_hf(FAMILIES[family][1], tiny_config(family), path)


@pytest.fixture(scope="module")
def lm(lm_dir):
    return models.load_pretrained(str(lm_dir[1]))


def test_structure(lm_dir, lm):
    family, _, _ = lm_dir
    model, params = lm
    assert model.family == "llama" and model.config.model_type == family
    attn = params["layers_0"]["self_attn"]
    assert attn["q_proj"]["kernel"].shape == (48, 48)
    assert attn["k_proj"]["kernel"].shape == (48, 16)  # 2 KV heads x head_dim 8
    assert ("bias" in attn["q_proj"]) == (family == "qwen2")
    assert "bias" not in attn["o_proj"]
    assert ("lm_head" in params) == (family == "llama")


@pytest.mark.parametrize("left", [False, True])
def test_lm_logits_match_transformers(lm_dir, lm, left):
    family, _, hf_model = lm_dir
    model, params = lm
    ids, mask = fx.padded_batch(seed=1, left=left)
    # RoPE is relative: HF's default positions give the same logits on left padding too.
    err = fx.masked_max_diff(model(params, ids, mask), fx.hf_outputs(hf_model, ids, mask), mask)
    n_params = models.param_count(params)
    print(f"{family} lm ({'left' if left else 'right'} padded): max abs err {err:.2e}, "
          f"{n_params} parameters")  # fmt: skip
    assert n_params == fx.hf_param_count(hf_model)
    assert err <= TOL


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("head, num_labels", [("token_cls", 3), ("seq_reg", 1)])
def test_classification_heads_match_transformers(tmp_path, family, head, num_labels):
    hf_cls = FAMILIES[family][2 if head == "token_cls" else 3]
    hf_model = fx.make_hf(hf_cls, tiny_config(family, num_labels=num_labels), tmp_path, seed=2)
    model, params = models.load_pretrained(str(tmp_path), head=head)
    ids, mask = fx.padded_batch(seed=3)
    err = fx.head_error(head, model(params, ids, mask), fx.hf_outputs(hf_model, ids, mask), mask)
    print(f"{family} {head}: max abs err {err:.2e}, {models.param_count(params)} parameters")
    assert models.param_count(params) == fx.hf_param_count(hf_model)
    assert err <= TOL


@pytest.mark.parametrize(
    "family, head", [("llama", "lm"), ("qwen2", "lm"), ("llama", "token_cls"), ("qwen2", "seq_reg")]
)
def test_save_pretrained_round_trips_through_transformers(tmp_path, family, head):
    hf_cls = FAMILIES[family][{"lm": 1, "token_cls": 2, "seq_reg": 3}[head]]
    config = tiny_config(family, num_labels=1 if head == "seq_reg" else 3)
    model, params = models.init_model(config, jax.random.key(0), head=head)
    err = fx.check_export(model, params, hf_cls, tmp_path)
    print(f"{family} {head} export -> transformers: max abs err {err:.2e}")
    assert err <= TOL


def test_sharded_checkpoint_loads(tmp_path):
    hf_model = fx.make_hf(LlamaForCausalLM, tiny_config("llama"), tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model, params = models.load_pretrained(str(tmp_path))
    ids, mask = fx.padded_batch(seed=6)
    err = fx.masked_max_diff(model(params, ids, mask), fx.hf_outputs(hf_model, ids, mask), mask)
    assert err <= TOL


@pytest.mark.parametrize("left", [False, True])
def test_kv_cache_decoding_matches_full_forward(lm_dir, lm, left):
    model, params = lm
    err = fx.check_kv_cache(model, params, left)
    print(f"{lm_dir[0]} kv cache ({'left' if left else 'right'} padded): max abs err {err:.2e}")
    assert err <= 1e-5


def test_bfloat16_close_to_float32(lm_dir):
    err = fx.check_bf16(lm_dir[1])
    print(f"{lm_dir[0]} bf16 vs f32: relative err {err:.2e}")
    assert err <= 2e-2


def test_sharded_forward_matches_single_device(lm):
    err = fx.check_sharded_forward(*lm)
    print(f"{lm[0].config.model_type} sharded vs 1 device: max abs err {err:.2e}")
    assert err <= 1e-5


def test_logical_partitioning(lm):
    fx.check_partitioning(lm[0])
    fx.check_partitioning(lm[0].with_head("lm_value"))


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), "rope"),
        (dict(rope_parameters=None, rope_scaling={"type": "dynamic", "factor": 2.0}), "rope"),
        (dict(hidden_act="gelu"), "hidden_act"),
    ],
)
def test_unsupported_config_is_rejected(overrides, key):
    config = tiny_config("llama").to_dict()
    config.update(overrides)
    with pytest.raises(ValueError, match=key):
        models.init_model(config, jax.random.key(0))
