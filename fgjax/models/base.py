"""The functional model object shared by every family.

A ``Model`` is a frozen, hashable description (family config + head + dtypes) around a Flax
Linen module. Parameters are plain pytrees passed explicitly, never stored on the object, so a
``Model`` can be a static argument of ``jax.jit``.

Family modules implement three methods:

* ``__call__(input_ids, attention_mask, decoder_input_ids=None, decoder_attention_mask=None)``
  returning the head output: logits ``[B, T, V]`` (``lm``), values ``[B, T]`` (``value``),
  label logits ``[B, T, L]`` (``token_cls``), scores ``[B]`` (``seq_reg``), or
  ``(logits, values)`` (``lm_value``, policy and value sharing one backbone).
* ``start_decoding(input_ids, attention_mask, max_new_tokens)`` -> ``(logits [B, V], cache)``:
  the logits for the first new token and a KV cache with room for ``max_new_tokens`` more.
* ``decode_step(token_ids [B], cache)`` -> ``(logits [B, V], cache)``.

Every cache leaf is batch-major, so a sampler may ``jnp.repeat`` a cache along axis 0 to draw
``n`` samples per prompt after encoding / prefilling each prompt once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from fgjax.models import partitioning

HEADS = ("lm", "value", "token_cls", "seq_reg", "lm_value")


@dataclasses.dataclass(frozen=True)
class Model:
    family: str  # "gpt2" | "llama" | "t5"
    config: Any  # the family's frozen config dataclass
    head: str
    module: nn.Module

    @property
    def is_encoder_decoder(self) -> bool:
        return self.family == "t5"

    def __call__(
        self,
        params,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        decoder_input_ids: jax.Array | None = None,
        decoder_attention_mask: jax.Array | None = None,
    ):
        return self.module.apply(
            {"params": params}, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask
        )

    def start_decoding(self, params, input_ids, attention_mask, max_new_tokens: int):
        return self.module.apply(
            {"params": params},
            input_ids,
            attention_mask,
            max_new_tokens,
            method=self.module.start_decoding,
        )

    def decode_step(self, params, token_ids, cache):
        return self.module.apply(
            {"params": params}, token_ids, cache, method=self.module.decode_step
        )

    def with_head(self, head: str) -> Model:
        """The same backbone with another head (e.g. ``lm`` for sampling from an ``lm_value``
        policy); parameters of heads the new module does not use are ignored."""
        if head == self.head:
            return self
        return dataclasses.replace(self, head=head, module=self.module.clone(head=head))

    def _dummy_inputs(self):
        ids = jnp.zeros((1, 4), jnp.int32)
        mask = jnp.ones((1, 4), jnp.int32)
        if self.is_encoder_decoder:
            return ids, mask, ids, mask
        return ids, mask

    def init_boxed(self, key: jax.Array):
        """Parameters still wrapped in their logical-partitioning boxes."""
        return self.module.init(key, *self._dummy_inputs())["params"]

    def init(self, key: jax.Array):
        return nn.meta.unbox(self.init_boxed(key))

    def abstract_params(self):
        """Shapes and dtypes of the parameters, without allocating them."""
        return nn.meta.unbox(jax.eval_shape(self.init_boxed, jax.random.key(0)))

    def logical_specs(self):
        """Pytree of logical ``PartitionSpec`` matching the parameters."""
        return partitioning.logical_specs(jax.eval_shape(self.init_boxed, jax.random.key(0)))

    def mesh_specs(self, rules=partitioning.DEFAULT_RULES):
        return partitioning.mesh_specs(self.logical_specs(), rules)


def param_count(params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
