"""T5 (v1.0 ReLU and v1.1 gated-GELU) encoder-decoder with HF checkpoint import / export.

Heads (see ``base.py``):

* ``lm``: logits ``[B, T_dec, V]``. Tied embeddings use ``shared`` as the output matrix; when
  ``scale_decoder_outputs`` (T5 v1.0) the decoder output is multiplied by ``d_model**-0.5``
  first, as HF does.
* ``value``: the reference's value MLP on the decoder's final hidden states -> ``[B, T_dec]``;
  ``lm_value``: ``(logits, values)``.
* ``token_cls``: as HF ``T5ForTokenClassification``, which is encoder-only: a ``classifier``
  on the encoder's hidden states -> ``[B, T_enc, L]``; decoder inputs are ignored.
* ``seq_reg``: HF ``T5ForSequenceClassification``'s ``classification_head`` (dense, tanh,
  out_proj) on one decoder state per row -> ``[B]`` (``num_labels == 1``) or ``[B, L]``. HF
  pools at the last EOS of ``input_ids`` (with decoder inputs = ``input_ids`` shifted right);
  we pool at the last position where ``decoder_attention_mask`` is 1, the project's
  convention. The two agree when decoder inputs are the shifted ``input_ids`` and each row
  ends with its single EOS.

Untying. transformers >= 5 always writes ``tie_word_embeddings: true`` for T5 and keeps a
separate ``lm_head`` exactly when the checkpoint holds an ``lm_head.weight`` differing from
``shared.weight``; the v1.1 marker is ``scale_decoder_outputs: false``. So a config that turns
scaling off (or tying off) gets its own ``lm_head``; a checkpoint without ``lm_head.weight``
then starts it from ``shared.weight``, which is the matrix HF multiplies by.

No dropout: the module is deterministic (rollouts, scoring and PPO updates all run without).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from fgjax.models import heads as heads_lib
from fgjax.models.hf_io import CheckpointFormatError
from fgjax.models.partitioning import EMBED, LABELS, VOCAB
from fgjax.models.t5_layers import ACTIVATIONS, ClassificationHead, Stack, constrain

MODEL_TYPES = ("t5",)

_ARCHITECTURES = {
    "lm": "T5ForConditionalGeneration",
    "value": "T5ForConditionalGeneration",
    "lm_value": "T5ForConditionalGeneration",
    "token_cls": "T5ForTokenClassification",
    "seq_reg": "T5ForSequenceClassification",
}
# HF classification classes nest the backbone under ``transformer.``.
_BACKBONE_PREFIX = {"token_cls": "transformer.", "seq_reg": "transformer."}


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"  # "relu" (v1.0) | "gated-gelu" (v1.1) | "[gated-]<act>"
    tie_word_embeddings: bool = True  # lm head = shared embedding
    scale_decoder_outputs: bool = True  # hidden * d_model**-0.5 before the lm head (v1.0)
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        """HF ``ACT2FN`` name; "gated-gelu" means the tanh GELU, as in HF's T5Config."""
        if self.feed_forward_proj == "gated-gelu":
            return "gelu_new"
        return self.feed_forward_proj.removeprefix("gated-")


def config_from_hf(hf: dict) -> T5Config:
    required = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
    missing = [k for k in required if k not in hf]
    if missing:
        raise ValueError(f"T5 config lacks {missing}")
    feed_forward_proj = hf.get("feed_forward_proj", "relu")
    parts = feed_forward_proj.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or parts[-1] not in ACTIVATIONS:
        raise ValueError(
            f"T5 feed_forward_proj {feed_forward_proj!r} is not '<act>' or 'gated-<act>' with "
            f"<act> in {sorted(ACTIVATIONS)}"
        )
    tie = hf.get("tie_word_embeddings", True) is not False
    scale = bool(hf.get("scale_decoder_outputs", tie))
    eos = hf.get("eos_token_id", 1)
    pad = int(hf.get("pad_token_id", 0) if hf.get("pad_token_id") is not None else 0)
    start = hf.get("decoder_start_token_id")
    return T5Config(
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["d_model"]),
        d_kv=int(hf["d_kv"]),
        d_ff=int(hf["d_ff"]),
        num_layers=int(hf["num_layers"]),
        num_decoder_layers=int(hf.get("num_decoder_layers") or hf["num_layers"]),
        num_heads=int(hf["num_heads"]),
        relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
        layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
        feed_forward_proj=feed_forward_proj,
        tie_word_embeddings=tie and scale,
        scale_decoder_outputs=scale,
        pad_token_id=pad,
        # HF allows a list of EOS ids; T5 checkpoints use one, the first is the sampler's stop.
        eos_token_id=int(eos[0] if isinstance(eos, list) else eos),
        # T5 starts decoding from the pad token unless the config names another.
        decoder_start_token_id=pad if start is None else int(start),
    )


def config_to_hf(cfg: T5Config, head: str, num_labels: int) -> dict:
    config = {
        "model_type": "t5",
        "architectures": [_ARCHITECTURES[head]],
        "is_encoder_decoder": True,
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "d_kv": cfg.d_kv,
        "d_ff": cfg.d_ff,
        "num_layers": cfg.num_layers,
        "num_decoder_layers": cfg.num_decoder_layers,
        "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "feed_forward_proj": cfg.feed_forward_proj,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "scale_decoder_outputs": cfg.scale_decoder_outputs,
        "pad_token_id": cfg.pad_token_id,
        "eos_token_id": cfg.eos_token_id,
        "decoder_start_token_id": cfg.decoder_start_token_id,
        "dropout_rate": 0.0,
    }
    if head in ("token_cls", "seq_reg"):
        config["num_labels"] = num_labels
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
    return config


class T5(nn.Module):
    cfg: T5Config
    head: str = "lm"
    num_labels: int = 2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.cfg
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        unnamed = dict(kw, name=None)  # setup-style: named by the attribute
        self.shared = nn.Embed(
            cfg.vocab_size,
            cfg.d_model,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(1.0), (VOCAB, EMBED)
            ),
            **kw,
        )
        self.encoder = Stack(cfg, is_decoder=False, **kw)
        if self.head != "token_cls":
            self.decoder = Stack(cfg, is_decoder=True, **kw)
        if self.head in ("lm", "lm_value") and not cfg.tie_word_embeddings:
            self.lm_head = heads_lib.dense(
                cfg.vocab_size, (EMBED, VOCAB), use_bias=False, init_std=1.0, **unnamed
            )
        if self.head in ("value", "lm_value"):
            self.value_head = heads_lib.ValueHead(cfg.d_model, **kw)
        if self.head == "token_cls":
            self.classifier = heads_lib.dense(
                self.num_labels, (EMBED, LABELS), use_bias=True, init_std=1.0, **unnamed
            )
        if self.head == "seq_reg":
            self.classification_head = ClassificationHead(cfg.d_model, self.num_labels, **kw)

    def encode(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """``input_ids``, ``attention_mask`` ``[B, P]`` -> encoder output ``[B, P, D]``."""
        return self.encoder.encode(constrain(self.shared(input_ids)), attention_mask)

    def lm_logits(self, hidden: jax.Array) -> jax.Array:
        """Decoder output ``[..., D]`` -> logits ``[..., V]``."""
        if self.cfg.scale_decoder_outputs:
            hidden = hidden * jnp.asarray(self.cfg.d_model**-0.5, hidden.dtype)
        if self.cfg.tie_word_embeddings:
            return self.shared.attend(hidden)
        return self.lm_head(hidden)

    def __call__(
        self, input_ids, attention_mask, decoder_input_ids=None, decoder_attention_mask=None
    ):
        """Encoder ``[B, P]`` and decoder ``[B, T]`` ids / masks -> the head's output."""
        if decoder_input_ids is None and self.head != "token_cls":
            raise ValueError(
                f"T5 head {self.head!r} needs decoder_input_ids (the decoder start token, then "
                "the target shifted right); only 'token_cls' runs on the encoder alone"
            )
        encoder_hidden = self.encode(input_ids, attention_mask)
        if self.head == "token_cls":
            return self.classifier(encoder_hidden)
        if decoder_attention_mask is None:
            decoder_attention_mask = jnp.ones_like(decoder_input_ids)
        hidden = self.decoder.decode(
            constrain(self.shared(decoder_input_ids)),
            decoder_attention_mask,
            self.decoder.cross_kv(encoder_hidden),
            attention_mask,
        )
        if self.head == "lm":
            return self.lm_logits(hidden)
        if self.head == "value":
            return self.value_head(hidden)
        if self.head == "lm_value":
            return self.lm_logits(hidden), self.value_head(hidden)
        if self.head == "seq_reg":
            pooled = heads_lib.gather_last(hidden, decoder_attention_mask)
            scores = self.classification_head(pooled)
            return scores[:, 0] if self.num_labels == 1 else scores
        raise ValueError(f"unknown head {self.head!r}")

    def _check_lm(self) -> None:
        if self.head not in ("lm", "lm_value"):
            raise ValueError(f"decoding needs an 'lm' or 'lm_value' head, not {self.head!r}")

    def start_decoding(self, input_ids, attention_mask, max_new_tokens: int):
        """Encode the prompt ``[B, P]`` (left or right padded) once, precompute every layer's
        cross-attention keys / values, feed ``decoder_start_token_id``.

        Returns the logits for the first new token ``[B, V]`` and a cache with
        ``max_new_tokens`` self-attention slots: the start token plus ``max_new_tokens - 1``
        fed tokens, i.e. logits for ``max_new_tokens`` new tokens. Cache leaves (batch-major)::

            {"self_keys"/"self_values": L x [B, N, H, Dk], "cross_keys"/"cross_values":
             L x [B, P, H, Dk], "encoder_mask": [B, P] bool, "index": [B] int32 (next slot)}
        """
        self._check_lm()
        cfg = self.cfg
        batch = input_ids.shape[0]
        cross_kv = self.decoder.cross_kv(self.encode(input_ids, attention_mask))
        empty = jnp.zeros((batch, max_new_tokens, cfg.num_heads, cfg.d_kv), self.dtype)
        cache = {
            "self_keys": (empty,) * cfg.num_decoder_layers,
            "self_values": (empty,) * cfg.num_decoder_layers,
            "cross_keys": tuple(k for k, _ in cross_kv),
            "cross_values": tuple(v for _, v in cross_kv),
            "encoder_mask": attention_mask > 0,
            "index": jnp.zeros((batch,), jnp.int32),
        }
        start = jnp.full((batch,), cfg.decoder_start_token_id, jnp.int32)
        return self.decode_step(start, cache)

    def decode_step(self, token_ids, cache):
        """Feed one decoder token per row ``[B]``; returns its next-token logits ``[B, V]`` and
        the updated cache. Writing past the cache's capacity is not checked (static shapes)."""
        self._check_lm()
        hidden, caches = self.decoder.decode_cached(
            self.shared(token_ids[:, None]),
            cache["index"],
            tuple(zip(cache["self_keys"], cache["self_values"])),
            tuple(zip(cache["cross_keys"], cache["cross_values"])),
            cache["encoder_mask"],
        )
        new_cache = dict(
            cache,
            self_keys=tuple(k for k, _ in caches),
            self_values=tuple(v for _, v in caches),
            index=cache["index"] + 1,
        )
        return self.lm_logits(hidden[:, 0]), new_cache


def make_module(cfg: T5Config, head: str, num_labels: int, dtype, param_dtype) -> T5:
    return T5(cfg, head=head, num_labels=num_labels, dtype=dtype, param_dtype=param_dtype)


# --- Hugging Face tensor names ------------------------------------------------------------
# One table of (Flax path, HF name, transposed) read in both directions. torch ``Linear``
# weights are ``[out, in]``; Flax kernels ``[in, out]``.


def _linear(path: tuple[str, ...], name: str, bias: bool = False) -> list:
    rows = [((*path, "kernel"), f"{name}.weight", True)]
    return rows + ([((*path, "bias"), f"{name}.bias", False)] if bias else [])


def _stack_names(cfg: T5Config, stack: str) -> list:
    decoder = stack == "decoder"
    rows = [
        (
            (stack, "relative_attention_bias", "embedding"),
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            False,
        ),
        ((stack, "final_layer_norm", "scale"), f"{stack}.final_layer_norm.weight", False),
    ]
    ff_names = ("wi_0", "wi_1", "wo") if cfg.is_gated else ("wi", "wo")
    for i in range(cfg.num_decoder_layers if decoder else cfg.num_layers):
        block, hf = (stack, f"blocks_{i}"), f"{stack}.block.{i}.layer"
        sublayers = [("self_attention", "0.SelfAttention")]
        if decoder:
            sublayers.append(("cross_attention", "1.EncDecAttention"))
        for ours, theirs in sublayers:
            norm = f"{hf}.{theirs[0]}.layer_norm.weight"
            rows.append(((*block, f"{ours}_norm", "scale"), norm, False))
            for proj in "qkvo":
                rows += _linear((*block, ours, proj), f"{hf}.{theirs}.{proj}")
        ff = 2 if decoder else 1
        rows.append(((*block, "feed_forward_norm", "scale"), f"{hf}.{ff}.layer_norm.weight", False))
        for proj in ff_names:
            rows += _linear((*block, "feed_forward", proj), f"{hf}.{ff}.DenseReluDense.{proj}")
    return rows


def _backbone_names(cfg: T5Config, head: str) -> list:
    rows = [(("shared", "embedding"), "shared.weight", False)] + _stack_names(cfg, "encoder")
    return rows if head == "token_cls" else rows + _stack_names(cfg, "decoder")


def _head_names(cfg: T5Config, head: str) -> list:
    rows = []
    if head in ("lm", "lm_value") and not cfg.tie_word_embeddings:
        rows += _linear(("lm_head",), "lm_head")
    if head in ("value", "lm_value"):
        rows += _linear(("value_head", "dense"), "value_head.dense", bias=True)
        rows += _linear(("value_head", "out"), "value_head.out", bias=True)
    if head == "token_cls":
        rows += _linear(("classifier",), "classifier", bias=True)
    if head == "seq_reg":
        rows += _linear(("classification_head", "dense"), "classification_head.dense", True)
        rows += _linear(("classification_head", "out_proj"), "classification_head.out_proj", True)
    return rows


def _check_lm_head(tensors: dict[str, np.ndarray], cfg: T5Config, head: str) -> None:
    """A tied config must not silently drop a trained, different ``lm_head.weight``."""
    if head not in ("lm", "lm_value") or not cfg.tie_word_embeddings:
        return
    lm_head = tensors.get("lm_head.weight")
    if lm_head is not None and not np.array_equal(lm_head, tensors["shared.weight"]):
        raise CheckpointFormatError(
            "T5 checkpoint has an lm_head.weight that differs from shared.weight, but its "
            "config ties them and scales decoder outputs (T5 v1.0); set "
            '"tie_word_embeddings": false and "scale_decoder_outputs": false in config.json '
            "if this is a T5 v1.1 checkpoint"
        )


def params_from_hf(tensors: dict[str, np.ndarray], cfg: T5Config, head: str) -> dict:
    """Flax params from HF tensor names (``transformer.``-prefixed or not)."""
    prefix = "transformer." if "transformer.shared.weight" in tensors else ""
    tensors = {k.removeprefix(prefix): v for k, v in tensors.items()}
    untied_without_head = not cfg.tie_word_embeddings and "lm_head.weight" not in tensors
    if untied_without_head and "shared.weight" in tensors:
        tensors["lm_head.weight"] = tensors["shared.weight"]  # the matrix HF multiplies by
    _check_lm_head(tensors, cfg, head)
    rows = _backbone_names(cfg, head) + _head_names(cfg, head)
    missing = [name for _, name, _ in rows if name not in tensors]
    if missing:
        raise CheckpointFormatError(
            f"T5 checkpoint (head {head!r}) lacks tensors {missing[:5]} ({len(missing)} "
            f"missing); it has e.g. {sorted(tensors)[:5]}"
        )
    flat = {
        path: (tensors[name].T if transpose else tensors[name]) for path, name, transpose in rows
    }
    return traverse_util.unflatten_dict(flat)


def params_to_hf(params, cfg: T5Config, head: str) -> dict[str, np.ndarray]:
    """HF tensors for ``head``'s architecture (see ``_ARCHITECTURES``); the value head's
    tensors are extra names that only our loader reads."""
    flat = traverse_util.flatten_dict(params)
    prefix = _BACKBONE_PREFIX.get(head, "")
    out = {}
    for path, name, transpose in _backbone_names(cfg, head):
        out[prefix + name] = np.asarray(flat[path]).T if transpose else np.asarray(flat[path])
    for path, name, transpose in _head_names(cfg, head):
        out[name] = np.asarray(flat[path]).T if transpose else np.asarray(flat[path])
    return out
