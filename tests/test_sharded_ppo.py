"""ppo_iteration over 8 simulated devices equals the single-device result (float32)."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from ppo_fixtures import llama_config, t5_config, tiny_batch, tiny_setup

from fgjax import sharding
from fgjax.trainer.ppo import make_ppo_iteration
from fgjax.trainer.sharded import make_sharded_ppo_iteration

MESHES = {"data8": (8, 1, 1), "data2_fsdp4": (2, 4, 1), "fsdp4_tensor2": (1, 4, 2)}
ITERATIONS = 2


def run_iterations(step, state, frozen, batch):
    for i in range(ITERATIONS):
        state, metrics = step(state, frozen, batch, jax.random.key(i))
    return jax.device_get(state.params), jax.device_get(metrics)


def tiny(family):
    config = llama_config() if family == "llama" else t5_config()
    return tiny_setup(config, max_new_tokens=6, ppo_epochs=1, minibatch_size=8)


@pytest.fixture(scope="module", params=["llama", "t5"])
def single_device_result(request):
    setup, state, frozen = tiny(request.param)
    batch = tiny_batch(batch_size=8)
    return request.param, run_iterations(make_ppo_iteration(setup), state, frozen, batch)


def assert_close(tree, expected, rtol=1e-4):
    for (path, got), want in zip(
        jax.tree_util.tree_leaves_with_path(tree), jax.tree.leaves(expected)
    ):
        scale = max(float(np.max(np.abs(want))), 1e-6)
        err = float(np.max(np.abs(np.asarray(got) - np.asarray(want)))) / scale
        assert err <= rtol, (jax.tree_util.keystr(path), err)


@pytest.mark.parametrize("mesh_name", MESHES)
def test_sharded_matches_single_device(single_device_result, mesh_name):
    family, (want_params, want_metrics) = single_device_result
    setup, state, frozen = tiny(family)
    batch = tiny_batch(batch_size=8)
    mesh = sharding.make_mesh(*MESHES[mesh_name])
    step, shardings = make_sharded_ppo_iteration(setup, mesh, batch)
    state = jax.device_put(state, shardings["state"])
    frozen = jax.device_put(frozen, shardings["frozen"])
    batch = jax.device_put(batch, shardings["batch"])
    if mesh_name == "fsdp4_tensor2":
        assert_sharded_as_ruled(state.params, shardings["state"].params)
    got_params, got_metrics = run_iterations(step, state, frozen, batch)
    assert set(got_metrics) == set(want_metrics)
    assert_close(got_metrics, want_metrics)
    assert_close(got_params, want_params)


def assert_sharded_as_ruled(params, expected_shardings):
    """No parameter is silently replicated where its rule says sharded."""
    is_sharding = lambda x: isinstance(x, NamedSharding)
    wanted = jax.tree.leaves(expected_shardings, is_leaf=is_sharding)
    for (path, array), want in zip(jax.tree_util.tree_leaves_with_path(params), wanted):
        assert array.sharding.is_equivalent_to(want, array.ndim), jax.tree_util.keystr(path)
        if any(axis is not None for axis in want.spec):
            assert array.addressable_shards[0].data.size < array.size, jax.tree_util.keystr(path)
