"""Checkpoints load straight into their shards and save back from them."""

import importlib.util

import jax
import numpy as np
from conftest import REPO_ROOT
from ppo_fixtures import llama_config, t5_config

from fgjax import sharding
from fgjax.models import init_model, load_pretrained, save_pretrained
from fgjax.trainer.ppo import init_state
from fgjax.trainer.sharded import RoleRules, state_shardings


def check_round_trip(config, tmp_path, mesh_shape):
    model, params = init_model(config, jax.random.key(0))
    save_pretrained(model, params, str(tmp_path / "src"))
    mesh = sharding.make_mesh(*mesh_shape)
    shardings = sharding.param_shardings(model, mesh)
    _, sharded = load_pretrained(str(tmp_path / "src"), shardings=shardings)
    for (path, array), want in zip(
        jax.tree_util.tree_leaves_with_path(sharded), jax.tree.leaves(params)
    ):
        np.testing.assert_array_equal(np.asarray(array), np.asarray(want))
        spec = array.sharding.spec
        if any(axis is not None for axis in spec):
            shard = array.addressable_shards[0].data
            assert shard.size < array.size, jax.tree_util.keystr(path)
    save_pretrained(model, sharded, str(tmp_path / "out"))
    _, reloaded = load_pretrained(str(tmp_path / "out"))
    for got, want in zip(jax.tree.leaves(reloaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_llama_loads_into_fsdp_tensor_shards(tmp_path):
    check_round_trip(llama_config(), tmp_path, (1, 4, 2))


def test_t5_loads_into_fsdp_shards(tmp_path):
    check_round_trip(t5_config(), tmp_path, (1, 8, 1))



def load_sharding_benchmark():
    spec = importlib.util.spec_from_file_location(
        "sharding_bench", REPO_ROOT / "experiments" / "benchmarks" / "sharding.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_fsdp8_state_bytes_per_device_are_an_eighth():
    """Parameters + Adam state per device under fsdp=8 <= 1/8 of one device's + 10%, for the
    benchmark's T5 policy + value (vocab 8,000, d_model 256)."""
    setup, policy_params, value_params, _ = load_sharding_benchmark().build("t5", 8000, 8)
    state = jax.eval_shape(lambda: init_state(setup, policy_params, value_params))
    per_device = {}
    for name, mesh_shape, devices in (
        ("one", (1, 1, 1), jax.devices()[:1]),
        ("fsdp8", (1, 8, 1), jax.devices()),
    ):
        mesh = sharding.make_mesh(*mesh_shape, devices=devices)
        shardings = state_shardings(setup, mesh, RoleRules())
        per_device[name] = sharding.per_device_bytes(
            (state.params, state.opt_state), (shardings.params, shardings.opt_state)
        )
    assert per_device["fsdp8"] <= per_device["one"] / 8 * 1.1, per_device
