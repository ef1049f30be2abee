"""GPT-2: learned absolute positions, pre-LayerNorm blocks, GELU (tanh), tied LM head.

Hugging Face's fused ``c_attn`` (Conv1D ``[D, 3D]``) is split into ``q_proj`` / ``k_proj`` /
``v_proj`` on import, so tensor parallelism can shard whole heads, and fused back on export.
HF Conv1D weights are already ``[in, out]``, the layout of a Flax kernel.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from fgjax.models import decoder_common as common
from fgjax.models.heads import dense
from fgjax.models.partitioning import EMBED, MLP, NORM, POSITIONS, VOCAB

MODEL_TYPES = ("gpt2",)
_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both are the tanh approximation
_PREFIX = "transformer."
_QKV = ("q_proj", "k_proj", "v_proj")
_ARCHITECTURES = {
    "lm": "GPT2LMHeadModel",
    "lm_value": "GPT2LMHeadModel",
    "value": "GPT2Model",
    "token_cls": "GPT2ForTokenClassification",
    "seq_reg": "GPT2ForSequenceClassification",
}


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    vocab_size: int
    max_positions: int
    hidden_size: int
    num_layers: int
    num_heads: int
    inner_size: int
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"n_embd {self.hidden_size} is not divisible by n_head {self.num_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_cache_shape(self) -> tuple[int, int]:
        return self.num_heads, self.head_dim


def config_from_hf(config: dict) -> GPT2Config:
    unsupported = {
        "activation_function": (config.get("activation_function", "gelu_new"), _ACTIVATIONS),
        "scale_attn_weights": (config.get("scale_attn_weights", True), (True,)),
        "scale_attn_by_inverse_layer_idx": (
            config.get("scale_attn_by_inverse_layer_idx", False),
            (False,),
        ),
        "add_cross_attention": (config.get("add_cross_attention", False), (False,)),
    }
    for key, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise ValueError(f"GPT-2 config {key}={value!r} is not supported; allowed: {allowed}")
    hidden = int(config["n_embd"])
    return GPT2Config(
        vocab_size=int(config["vocab_size"]),
        max_positions=int(config["n_positions"]),
        hidden_size=hidden,
        num_layers=int(config["n_layer"]),
        num_heads=int(config["n_head"]),
        inner_size=int(config.get("n_inner") or 4 * hidden),
        layer_norm_epsilon=float(config.get("layer_norm_epsilon", 1e-5)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
        bos_token_id=config.get("bos_token_id"),
        eos_token_id=config.get("eos_token_id"),
        pad_token_id=config.get("pad_token_id"),
    )


def config_to_hf(cfg: GPT2Config, head: str, num_labels: int) -> dict:
    return {
        "model_type": "gpt2",
        "architectures": [_ARCHITECTURES[head]],
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_positions,
        "n_embd": cfg.hidden_size,
        "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads,
        "n_inner": cfg.inner_size,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        **common.labels_config(num_labels),
    }


def _layer_norm(cfg: GPT2Config, dtype, param_dtype, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_epsilon,
        dtype=dtype,
        param_dtype=param_dtype,
        use_fast_variance=False,  # two-pass variance, as torch
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, (NORM,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (NORM,)),
        name=name,
    )


class GPT2Block(nn.Module):
    cfg: GPT2Config
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, positions, mask, cache_kv=None, slot=None):
        cfg, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = common.Attention(
            cfg.num_heads, cfg.num_heads, cfg.head_dim, True, True, name="attn", **kw
        )
        h, kv = attn(_layer_norm(cfg, name="ln_1", **kw)(x), positions, mask, cache_kv, slot)
        x = x + h
        h = _layer_norm(cfg, name="ln_2", **kw)(x)
        h = dense(cfg.inner_size, (EMBED, MLP), use_bias=True, name="c_fc", **kw)(h)
        h = nn.gelu(h, approximate=True)
        h = dense(cfg.hidden_size, (MLP, EMBED), use_bias=True, name="c_proj", **kw)(h)
        return x + h, kv


class GPT2(common.DecoderOnly):
    def setup(self):
        cfg, kw = self.cfg, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.wte = nn.Embed(
            cfg.vocab_size,
            cfg.hidden_size,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(0.02), (VOCAB, EMBED)
            ),
            **kw,
        )
        self.wpe = nn.Embed(
            cfg.max_positions,
            cfg.hidden_size,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(0.01), (POSITIONS, EMBED)
            ),
            **kw,
        )
        self.h = [GPT2Block(cfg, **kw) for _ in range(cfg.num_layers)]
        self.ln_f = _layer_norm(cfg, **kw)
        self.setup_heads()

    @property
    def layers(self):
        return self.h

    def embed(self, input_ids: jax.Array, positions: jax.Array) -> jax.Array:
        return self.wte(input_ids) + self.wpe(positions)

    def final_norm(self, x: jax.Array) -> jax.Array:
        return self.ln_f(x)

    def tied_logits(self, hidden: jax.Array) -> jax.Array:
        return self.wte.attend(hidden)


def make_module(cfg: GPT2Config, head: str, num_labels: int, dtype, param_dtype) -> GPT2:
    return GPT2(cfg, head=head, num_labels=num_labels, dtype=dtype, param_dtype=param_dtype)


def _backbone_names(cfg: GPT2Config) -> list[common.HFName]:
    """Backbone tensors with ``c_attn`` already split into ``q_proj/k_proj/v_proj``."""
    N = common.HFName
    names = [N(("wte", "embedding"), "wte.weight"), N(("wpe", "embedding"), "wpe.weight")]
    for i in range(cfg.num_layers):
        layer, hf = f"h_{i}", f"h.{i}"
        for norm in ("ln_1", "ln_2"):
            names += [
                N((layer, norm, "scale"), f"{hf}.{norm}.weight"),
                N((layer, norm, "bias"), f"{hf}.{norm}.bias"),
            ]
        modules = [(("attn", p), f"attn.{p}") for p in _QKV]
        modules += [(("attn", "o_proj"), "attn.c_proj")]
        modules += [(("c_fc",), "mlp.c_fc"), (("c_proj",), "mlp.c_proj")]
        for path, name in modules:
            names += [
                N((layer, *path, "kernel"), f"{hf}.{name}.weight"),
                N((layer, *path, "bias"), f"{hf}.{name}.bias"),
            ]
    return names + [N(("ln_f", "scale"), "ln_f.weight"), N(("ln_f", "bias"), "ln_f.bias")]


def _head_names(cfg: GPT2Config, head: str) -> list[common.HFName]:
    return common.head_names(cfg, head, token_cls_name="classifier")


def params_from_hf(tensors: dict[str, np.ndarray], cfg: GPT2Config, head: str) -> dict:
    tensors = common.strip_prefix(tensors, _PREFIX)
    for i in range(cfg.num_layers):
        for kind in ("weight", "bias"):
            fused = tensors.get(f"h.{i}.attn.c_attn.{kind}")
            if fused is None:
                continue
            parts = np.split(np.asarray(fused), 3, axis=-1)
            for proj, part in zip(_QKV, parts):
                tensors[f"h.{i}.attn.{proj}.{kind}"] = part
    return common.params_from_names(tensors, _backbone_names(cfg) + _head_names(cfg, head))


def params_to_hf(params, cfg: GPT2Config, head: str) -> dict[str, np.ndarray]:
    tensors = common.params_to_names(
        params, _backbone_names(cfg), _PREFIX, _head_names(cfg, head)
    )
    for i in range(cfg.num_layers):
        for kind in ("weight", "bias"):
            parts = [tensors.pop(f"{_PREFIX}h.{i}.attn.{p}.{kind}") for p in _QKV]
            tensors[f"{_PREFIX}h.{i}.attn.c_attn.{kind}"] = np.concatenate(parts, axis=-1)
    return tensors
