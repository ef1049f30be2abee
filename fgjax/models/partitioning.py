"""Logical axis names and the table that maps them to mesh axes.

Models annotate every parameter with logical names (``nn.with_logical_partitioning``); a rules
table maps each name to a mesh axis of ``("data", "fsdp", "tensor")`` or to ``None``
(replicated). A logical name without a rule is an error: nothing is silently replicated.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import linen as nn
from jax.sharding import PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# Parameter axes.
VOCAB = "vocab"  # vocabulary rows of embeddings / LM heads
EMBED = "embed"  # model width (d_model / hidden_size)
MLP = "mlp"  # feed-forward inner width
HEADS = "heads"  # query heads x head_dim, fused
KV_HEADS = "kv_heads"  # key/value heads x head_dim, fused (grouped-query attention)
POSITIONS = "positions"  # learned absolute positions (GPT-2)
REL_BUCKETS = "rel_buckets"  # T5 relative-position buckets
NORM = "norm"  # layer-norm scales and biases
LABELS = "labels"  # classification / regression outputs
VALUE_OUT = "value_out"  # the value head's scalar output

# Activation axes (used in sharding constraints at block boundaries).
BATCH = "batch"
LENGTH = "length"
ACT_EMBED = "act_embed"

# FSDP over the model width, tensor parallelism over heads / MLP / vocabulary.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    (BATCH, ("data", "fsdp")),
    (LENGTH, None),
    (ACT_EMBED, None),
    (VOCAB, "tensor"),
    (EMBED, "fsdp"),
    (MLP, "tensor"),
    (HEADS, "tensor"),
    (KV_HEADS, "tensor"),
    (POSITIONS, None),
    (REL_BUCKETS, None),
    (NORM, None),
    (LABELS, None),
    (VALUE_OUT, None),
)


class UnmappedLogicalAxisError(ValueError):
    """A parameter names a logical axis that the rules table does not map."""


def logical_to_mesh(logical: PartitionSpec | Sequence[str | None], rules) -> PartitionSpec:
    """Map one logical spec, e.g. ``("embed", "mlp")``, to a mesh ``PartitionSpec``."""
    table = dict(rules)
    mesh_axes = []
    used: set[str] = set()
    for name in logical:
        if name is None:
            mesh_axes.append(None)
            continue
        if name not in table:
            raise UnmappedLogicalAxisError(
                f"logical axis {name!r} has no rule; known: {sorted(table)}"
            )
        target = table[name]
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        # A mesh axis may shard only one dimension of an array; later uses replicate.
        targets = tuple(t for t in targets if t not in used)
        used.update(targets)
        mesh_axes.append(targets[0] if len(targets) == 1 else (targets or None))
    return PartitionSpec(*mesh_axes)


def logical_specs(boxed_params) -> object:
    """Pytree of logical ``PartitionSpec`` from (possibly abstract) boxed parameters."""
    return nn.get_partition_spec(boxed_params)


def mesh_specs(logical_tree, rules=DEFAULT_RULES) -> object:
    """Map a pytree of logical specs to mesh specs; errors on any unmapped name."""
    return jax.tree.map(
        lambda spec: logical_to_mesh(spec, rules),
        logical_tree,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )
