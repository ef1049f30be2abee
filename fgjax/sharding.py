"""Meshes, logical-axis rules and sharded initialisation (XLA SPMD; nothing home-made).

Parameters get their shardings from their logical axis names through a rules table; batches
shard over ``("data", "fsdp")``. Initialisation runs under ``jax.jit`` with ``out_shardings``
from ``jax.eval_shape``, so full parameters never sit on one device.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fgjax.models import Model
from fgjax.models.partitioning import DEFAULT_RULES, MESH_AXES, logical_to_mesh

BATCH_AXES = ("data", "fsdp")


def mesh_shape(data: int = 1, fsdp: int = -1, tensor: int = 1, num_devices: int | None = None):
    """Resolve ``-1`` (fill with the remaining devices) and check the product."""
    num_devices = jax.device_count() if num_devices is None else num_devices
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    fill = [name for name, size in sizes.items() if size == -1]
    if len(fill) > 1:
        raise ValueError(f"mesh: only one axis may be -1, got {sizes}")
    for name, size in sizes.items():
        if size != -1 and size < 1:
            raise ValueError(f"mesh.{name}={size}; allowed: a positive size or -1 (fill)")
    known = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if num_devices % known:
            raise ValueError(f"mesh: {num_devices} devices are not divisible by {sizes}")
        sizes[fill[0]] = num_devices // known
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(
            f"mesh {sizes} needs {math.prod(sizes.values())} devices, have {num_devices}"
        )
    return tuple(sizes[name] for name in MESH_AXES)


def make_mesh(
    data: int = 1,
    fsdp: int = -1,
    tensor: int = 1,
    dcn_data: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A ``("data", "fsdp", "tensor")`` mesh. ``dcn_data > 1`` lays ``data`` across slices
    (multi-slice TPU: data parallelism over the slower data-centre network)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(data, fsdp, tensor, len(devices))
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    if dcn_data > 1:
        from jax.experimental import mesh_utils

        if shape[0] % dcn_data:
            raise ValueError(f"mesh.data={shape[0]} is not divisible by mesh.dcn_data={dcn_data}")
        ici = (shape[0] // dcn_data, shape[1], shape[2])
        grid = mesh_utils.create_hybrid_device_mesh(ici, (dcn_data, 1, 1), devices)
        return Mesh(grid, MESH_AXES, axis_types=axis_types)
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)


def rules_from_config(rules: Sequence[Sequence] | None) -> tuple:
    """Rules as ``((logical, mesh_axis_or_axes_or_None), ...)``; ``None`` -> defaults."""
    if rules is None:
        return DEFAULT_RULES
    table = []
    for rule in rules:
        if len(rule) != 2:
            raise ValueError(f"sharding rule {rule!r} must be (logical_name, mesh_axes)")
        name, target = rule
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        unknown = [t for t in targets if t not in MESH_AXES]
        if unknown:
            raise ValueError(
                f"sharding rule for {name!r} names mesh axes {unknown}; allowed {MESH_AXES}"
            )
        table.append((name, target if target is None or isinstance(target, str) else tuple(target)))
    return tuple(table)


def _check_divisible(path, shape, spec: PartitionSpec, mesh: Mesh) -> None:
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if axes is None:
            continue
        names = (axes,) if isinstance(axes, str) else axes
        size = math.prod(mesh.shape[a] for a in names)
        if dim % size:
            raise ValueError(
                f"parameter {jax.tree_util.keystr(path)} of shape {shape}: dimension {dim} is not "
                f"divisible by mesh axes {names} (size {size}); change the mesh or the rules"
            )


def param_shardings(model: Model, mesh: Mesh, rules=DEFAULT_RULES):
    """``NamedSharding`` per parameter from its logical names (an unmapped name is an error)."""
    abstract = model.abstract_params()
    logical = model.logical_specs()
    is_spec = lambda x: isinstance(x, PartitionSpec)
    specs = jax.tree.map(lambda s: logical_to_mesh(s, rules), logical, is_leaf=is_spec)
    flat_specs = jax.tree.leaves(specs, is_leaf=is_spec)
    for (path, leaf), spec in zip(jax.tree_util.tree_leaves_with_path(abstract), flat_specs):
        _check_divisible(path, leaf.shape, spec, mesh)
    return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=is_spec)


def sharded_init(model: Model, key: jax.Array, mesh: Mesh, rules=DEFAULT_RULES):
    """Random parameters created directly in their shards."""
    return jax.jit(model.init, out_shardings=param_shardings(model, mesh, rules))(key)


def shard_params(params, shardings):
    """Place host or single-device parameters onto their shardings."""
    return jax.tree.map(jax.device_put, params, shardings)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading (batch) dimension over ``("data", "fsdp")``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def batch_shardings(mesh: Mesh, batch: Mapping):
    return jax.tree.map(lambda x: batch_sharding(mesh, np.ndim(x)), batch)


def optimizer_state_shardings(
    tx: optax.GradientTransformation, params_shardings, abstract_params, mesh
):
    """Optimizer moments shard like their parameters; counters are replicated."""
    abstract_state = jax.eval_shape(tx.init, abstract_params)
    return optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        abstract_state,
        params_shardings,
        transform_non_params=lambda _: replicated(mesh),
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )


def global_batch_from_local(local_batch: Mapping, mesh: Mesh):
    """Assemble the global batch from each host's slice (multi-host: every process passes the
    rows it loaded; on one host this is just ``device_put`` with the batch sharding)."""
    shardings = batch_shardings(mesh, local_batch)
    if jax.process_count() == 1:
        return jax.tree.map(jax.device_put, dict(local_batch), shardings)
    return jax.tree.map(
        lambda x, s: jax.make_array_from_process_local_data(s, np.asarray(x)),
        dict(local_batch),
        shardings,
    )


def maybe_initialize_distributed() -> bool:
    """``jax.distributed.initialize()`` when launched on several hosts (TPU pod / SLURM / env
    vars); a no-op on one host. Returns whether it initialised."""
    multi_host = any(
        os.environ.get(var)
        for var in ("TPU_WORKER_HOSTNAMES", "JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS")
    )
    hostnames = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if os.environ.get("TPU_WORKER_HOSTNAMES") is not None and "," not in hostnames:
        multi_host = False  # a single-host TPU VM lists only itself
    if multi_host:
        jax.distributed.initialize()
    return multi_host


def per_device_bytes(tree, shardings) -> int:
    """Bytes one device holds of ``tree`` (arrays or ``ShapeDtypeStruct``) under ``shardings``
    (the largest over devices; shards are equal when dimensions divide)."""
    is_sharding = lambda x: isinstance(x, jax.sharding.Sharding)
    sizes = [
        math.prod(s.shard_shape(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        for leaf, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings, is_leaf=is_sharding))
    ]
    return int(sum(sizes))
