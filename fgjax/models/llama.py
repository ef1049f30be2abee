"""Llama / Qwen2-style decoder: RoPE (configurable theta), RMSNorm, SwiGLU, grouped-query
attention, optional biases (Qwen2: on q/k/v only; Llama ``attention_bias``: q/k/v/o), tied or
untied embeddings.

Sliding-window attention and scaled RoPE variants (``rope_type`` other than ``default``) are
rejected at config time rather than silently computed as full attention / plain RoPE.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from fgjax.models import decoder_common as common
from fgjax.models.heads import dense
from fgjax.models.partitioning import EMBED, MLP, NORM, VOCAB

MODEL_TYPES = ("llama", "qwen2")
_PREFIX = "model."
_CLASS_PREFIX = {"llama": "Llama", "qwen2": "Qwen2"}
_ARCHITECTURE_SUFFIX = {
    "lm": "ForCausalLM",
    "lm_value": "ForCausalLM",
    "value": "Model",
    "token_cls": "ForTokenClassification",
    "seq_reg": "ForSequenceClassification",
}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    model_type: str  # "llama" | "qwen2": decides the bias layout and the exported config
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_positions: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads {self.num_heads} is not a multiple of "
                f"num_key_value_heads {self.num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def kv_cache_shape(self) -> tuple[int, int]:
        return self.num_kv_heads, self.head_dim


def _rope_theta(config: dict) -> float:
    """``rope_parameters`` (transformers 5) or the legacy ``rope_theta`` / ``rope_scaling``."""
    rope = dict(config.get("rope_parameters") or {})
    scaling = config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    if rope_type != "default":
        raise ValueError(f"rope_type {rope_type!r} is not supported; allowed: ('default',)")
    factor = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
    if factor != 1.0:
        raise ValueError(f"partial_rotary_factor {factor} is not supported; allowed: 1.0")
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def config_from_hf(config: dict) -> LlamaConfig:
    model_type = config["model_type"]
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported; allowed: silu")
    if model_type == "qwen2":
        if config.get("use_sliding_window", False):
            raise ValueError("qwen2 use_sliding_window=True is not supported; allowed: False")
        qkv_bias, o_bias, mlp_bias = True, False, False
    else:
        qkv_bias = o_bias = bool(config.get("attention_bias", False))
        mlp_bias = bool(config.get("mlp_bias", False))
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    return LlamaConfig(
        model_type=model_type,
        vocab_size=int(config["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(config["intermediate_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        max_positions=int(config.get("max_position_embeddings", 2048)),
        rope_theta=_rope_theta(config),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=mlp_bias,
        bos_token_id=config.get("bos_token_id"),
        eos_token_id=config.get("eos_token_id"),
        pad_token_id=config.get("pad_token_id"),
    )


def config_to_hf(cfg: LlamaConfig, head: str, num_labels: int) -> dict:
    config = {
        "model_type": cfg.model_type,
        "architectures": [_CLASS_PREFIX[cfg.model_type] + _ARCHITECTURE_SUFFIX[head]],
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_positions,
        "rms_norm_eps": cfg.rms_norm_eps,
        # Both spellings: transformers 5 reads rope_parameters, older readers rope_theta.
        "rope_parameters": {"rope_theta": cfg.rope_theta, "rope_type": "default"},
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        **common.labels_config(num_labels),
    }
    if cfg.model_type == "qwen2":
        config["use_sliding_window"] = False
    else:
        config["attention_bias"] = cfg.qkv_bias
        config["mlp_bias"] = cfg.mlp_bias
    return config


class RMSNorm(nn.Module):
    """``x / rms(x) * scale`` with the statistics in float32 (as HF ``LlamaRMSNorm``)."""

    epsilon: float
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.with_logical_partitioning(nn.initializers.ones, (NORM,))
        scale = self.param("scale", init, (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        normed = x32 * lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.epsilon)
        return scale.astype(self.dtype) * normed.astype(self.dtype)


class LlamaBlock(nn.Module):
    cfg: LlamaConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, positions, mask, cache_kv=None, slot=None):
        cfg, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        heads = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)
        attn = common.Attention(
            *heads, cfg.qkv_bias, cfg.o_bias, rope_theta=cfg.rope_theta, name="self_attn", **kw
        )
        h = RMSNorm(cfg.rms_norm_eps, name="input_layernorm", **kw)(x)
        h, kv = attn(h, positions, mask, cache_kv, slot)
        x = x + h
        h = RMSNorm(cfg.rms_norm_eps, name="post_attention_layernorm", **kw)(x)
        up_kw = dict(use_bias=cfg.mlp_bias, **kw)
        gate = dense(cfg.intermediate_size, (EMBED, MLP), name="gate_proj", **up_kw)(h)
        up = dense(cfg.intermediate_size, (EMBED, MLP), name="up_proj", **up_kw)(h)
        h = dense(cfg.hidden_size, (MLP, EMBED), name="down_proj", **up_kw)(nn.silu(gate) * up)
        return x + h, kv


class Llama(common.DecoderOnly):
    def setup(self):
        cfg, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.embed_tokens = nn.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(0.02), (VOCAB, EMBED)
            ),
            **kw,
        )
        self.layers = [LlamaBlock(cfg, **kw) for _ in range(cfg.num_layers)]
        self.norm = RMSNorm(cfg.rms_norm_eps, **kw)
        self.setup_heads()

    def embed(self, input_ids: jax.Array, positions: jax.Array) -> jax.Array:
        del positions  # RoPE is applied inside attention
        return self.embed_tokens(input_ids)

    def final_norm(self, x: jax.Array) -> jax.Array:
        return self.norm(x)

    def tied_logits(self, hidden: jax.Array) -> jax.Array:
        return self.embed_tokens.attend(hidden)


def make_module(cfg: LlamaConfig, head: str, num_labels: int, dtype, param_dtype) -> Llama:
    return Llama(cfg, head=head, num_labels=num_labels, dtype=dtype, param_dtype=param_dtype)


def _backbone_names(cfg: LlamaConfig) -> list[common.HFName]:
    N, linear = common.HFName, common.linear_names
    names = [N(("embed_tokens", "embedding"), "embed_tokens.weight")]
    for i in range(cfg.num_layers):
        layer, hf = f"layers_{i}", f"layers.{i}"
        for norm in ("input_layernorm", "post_attention_layernorm"):
            names.append(N((layer, norm, "scale"), f"{hf}.{norm}.weight"))
        for proj in ("q_proj", "k_proj", "v_proj"):
            names += linear((layer, "self_attn", proj), f"{hf}.self_attn.{proj}", cfg.qkv_bias)
        names += linear((layer, "self_attn", "o_proj"), f"{hf}.self_attn.o_proj", cfg.o_bias)
        for proj in ("gate_proj", "up_proj", "down_proj"):
            names += linear((layer, proj), f"{hf}.mlp.{proj}", cfg.mlp_bias)
    return names + [N(("norm", "scale"), "norm.weight")]


def params_from_hf(tensors: dict[str, np.ndarray], cfg: LlamaConfig, head: str) -> dict:
    names = _backbone_names(cfg) + common.head_names(cfg, head)
    return common.params_from_names(common.strip_prefix(tensors, _PREFIX), names)


def params_to_hf(params, cfg: LlamaConfig, head: str) -> dict[str, np.ndarray]:
    return common.params_to_names(
        params, _backbone_names(cfg), _PREFIX, common.head_names(cfg, head)
    )
