"""Flax model zoo with Hugging Face checkpoint import/export.

Public API::

    model, params = load_pretrained(path, head="lm", dtype=jnp.float32)
    model, params = init_model(hf_config, key, head="lm")
    out = model(params, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask)
    save_pretrained(model, params, path)

Each family module (``gpt2``, ``llama``, ``t5``) provides ``MODEL_TYPES``, ``config_from_hf``,
``config_to_hf``, ``make_module``, ``params_from_hf`` and ``params_to_hf``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

from fgjax.models import hf_io
from fgjax.models.base import HEADS, Model, param_count

__all__ = [
    "HEADS",
    "Model",
    "init_model",
    "load_pretrained",
    "param_count",
    "save_pretrained",
]

_FAMILIES = ("gpt2", "llama", "t5")


def _family_for(model_type: str) -> tuple[str, ModuleType]:
    for name in _FAMILIES:
        module = importlib.import_module(f"fgjax.models.{name}")
        if model_type in module.MODEL_TYPES:
            return name, module
    supported = [
        t for n in _FAMILIES for t in importlib.import_module(f"fgjax.models.{n}").MODEL_TYPES
    ]
    raise ValueError(f"model_type {model_type!r} is not supported; supported: {supported}")


def _check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"head {head!r} is not one of {HEADS}")


def build_model(hf_config: dict, head: str = "lm", dtype=jnp.float32, param_dtype=jnp.float32):
    """The ``Model`` for a Hugging Face config dict (no parameters)."""
    _check_head(head)
    family_name, family = _family_for(hf_config.get("model_type", ""))
    cfg = family.config_from_hf(hf_config)
    num_labels = int(hf_config.get("num_labels", len(hf_config.get("id2label", {})) or 2))
    module = family.make_module(cfg, head, num_labels, dtype, param_dtype)
    return Model(family=family_name, config=cfg, head=head, module=module)


def init_model(
    hf_config, key: jax.Array, head: str = "lm", dtype=jnp.float32, param_dtype=jnp.float32
):
    """Random initialisation from a ``transformers`` config object (or its dict)."""
    config = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    model = build_model(config, head, dtype, param_dtype)
    return model, model.init(key)


def load_pretrained(
    path: str, head: str = "lm", dtype=jnp.float32, param_dtype=None, shardings=None
):
    """Load an HF directory (``config.json`` + safetensors) into ``(model, params)``.

    ``dtype`` is the computation dtype; parameters are stored in ``param_dtype`` (defaults to
    ``dtype``, so ``dtype=jnp.bfloat16`` gives a bfloat16 model). With ``shardings`` (a pytree
    of ``NamedSharding`` matching the parameters, e.g. ``fgjax.sharding.param_shardings``) each
    device receives only its own slice of every tensor (``jax.make_array_from_callback``): the
    full parameters never sit on one device; the host streams them from the memory-mapped
    safetensors files.
    """
    param_dtype = dtype if param_dtype is None else param_dtype
    config = hf_io.read_config(path)
    model = build_model(config, head, dtype, param_dtype)
    family = importlib.import_module(f"fgjax.models.{model.family}")
    tensors = hf_io.read_tensors(path)
    params = family.params_from_hf(tensors, model.config, head)
    abstract = model.abstract_params()
    _check_structure(params, abstract, path)
    if shardings is None:
        return model, jax.tree.map(lambda x, a: jnp.asarray(x, dtype=a.dtype), params, abstract)

    def place(host, spec, sharding):
        return jax.make_array_from_callback(
            spec.shape, sharding, lambda index: np.asarray(host[index], dtype=spec.dtype)
        )

    return model, jax.tree.map(place, params, abstract, shardings)


def _check_structure(params, abstract, path: str) -> None:
    got = {
        jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)
    }
    want = {
        jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(abstract)
    }
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
        raise hf_io.CheckpointFormatError(
            f"{path}: parameters do not match the config: missing {missing[:5]}, "
            f"unexpected {extra[:5]}, wrong shapes {[(k, got[k], want[k]) for k in wrong[:5]]}"
        )


def save_pretrained(model: Model, params, path: str) -> None:
    """Write an HF directory that the matching ``transformers`` class loads. Sharded
    parameters are gathered (across hosts too); only process 0 writes."""
    family = importlib.import_module(f"fgjax.models.{model.family}")
    num_labels = getattr(model.module, "num_labels", 2)
    config = family.config_to_hf(model.config, model.head, num_labels)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        params = multihost_utils.process_allgather(params, tiled=True)
    if jax.process_index() != 0:
        return
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(x), dtype=np.float32), params)
    hf_io.write_checkpoint(path, config, family.params_to_hf(host, model.config, model.head))


def load_backbone_with_new_head(path: str, head: str, key: jax.Array, dtype=jnp.float32):
    """A model with ``head`` whose backbone comes from the checkpoint at ``path`` (e.g. a value
    model started from the SFT policy, as the reference does) and whose head parameters are
    freshly initialised. Heads the checkpoint already has are loaded too."""
    config = hf_io.read_config(path)
    model = build_model(config, head, dtype, dtype)
    fresh = model.init(key)
    family = importlib.import_module(f"fgjax.models.{model.family}")
    tensors = hf_io.read_tensors(path)
    try:
        loaded = family.params_from_hf(tensors, model.config, head)
    except hf_io.CheckpointFormatError:
        loaded = family.params_from_hf(tensors, model.config, "lm")
    flat_fresh = jax.tree_util.tree_leaves_with_path(fresh)
    loaded_by_path = {
        jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(loaded)
    }
    leaves = []
    for path_key, leaf in flat_fresh:
        name = jax.tree_util.keystr(path_key)
        source = loaded_by_path.get(name)
        if source is not None and np.shape(source) == leaf.shape:
            leaf = jnp.asarray(source, leaf.dtype)
        leaves.append(leaf)
    return model, jax.tree.unflatten(jax.tree.structure(fresh), leaves)
