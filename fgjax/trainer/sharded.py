"""The PPO iteration compiled over a mesh with explicit shardings for every pytree it touches.

Each role (policy, value, reference, each reward model) may have its own logical-axis rules;
the optimizer state shards like the parameters it tracks; batches shard over
``("data", "fsdp")``; activations are constrained at block boundaries by the models' logical
constraints, resolved here with the policy's rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
from flax import linen as nn
from jax.sharding import Mesh

from fgjax import sharding
from fgjax.models import Model
from fgjax.models.partitioning import DEFAULT_RULES
from fgjax.trainer.ppo import PPOSetup, PPOState, ppo_iteration_fn


@dataclasses.dataclass(frozen=True)
class RoleRules:
    """Logical-axis rules per role; any role left ``None`` uses ``default``."""

    default: tuple = DEFAULT_RULES
    policy: tuple | None = None
    value: tuple | None = None
    ref: tuple | None = None
    rewards: Mapping[str, tuple] | None = None

    def of(self, role: str, name: str | None = None) -> tuple:
        if role == "rewards":
            return (self.rewards or {}).get(name) or self.default
        return getattr(self, role) or self.default


def state_shardings(setup: PPOSetup, mesh: Mesh, rules: RoleRules) -> PPOState:
    params = {"policy": sharding.param_shardings(setup.policy, mesh, rules.of("policy"))}
    abstract = {"policy": setup.policy.abstract_params()}
    if setup.value is not None:
        params["value"] = sharding.param_shardings(setup.value, mesh, rules.of("value"))
        abstract["value"] = setup.value.abstract_params()
    replicated = sharding.replicated(mesh)
    return PPOState(
        step=replicated,
        params=params,
        opt_state=sharding.optimizer_state_shardings(setup.tx, params, abstract, mesh),
        nonfinite_skips=replicated,
    )


def frozen_shardings(setup: PPOSetup, reward_models: Mapping[str, Model], mesh, rules: RoleRules):
    return {
        "ref": sharding.param_shardings(setup.ref, mesh, rules.of("ref")),
        "rewards": {
            name: sharding.param_shardings(model, mesh, rules.of("rewards", name))
            for name, model in reward_models.items()
        },
    }


def make_sharded_ppo_iteration(
    setup: PPOSetup,
    mesh: Mesh,
    batch_example: Mapping,
    reward_models: Mapping[str, Model] | None = None,
    rules: RoleRules = RoleRules(),
):
    """``ppo_iteration`` jitted with ``in_shardings`` / ``out_shardings`` over ``mesh``.

    Returns ``(step_fn, shardings)`` where ``shardings`` holds ``state``, ``frozen`` and
    ``batch`` shardings for placing the inputs (``jax.device_put``) before the first call.
    """
    state_sh = state_shardings(setup, mesh, rules)
    frozen_sh = frozen_shardings(setup, reward_models or {}, mesh, rules)
    batch_sh = sharding.batch_shardings(mesh, batch_example)
    replicated = sharding.replicated(mesh)
    inner = ppo_iteration_fn(setup)

    def step(state, frozen, batch, key):
        with nn.logical_axis_rules(rules.of("policy")):
            return inner(state, frozen, batch, key)

    jitted = jax.jit(
        step,
        in_shardings=(state_sh, frozen_sh, batch_sh, replicated),
        out_shardings=(state_sh, replicated),
        donate_argnums=0,
    )

    def run(state, frozen, batch, key):
        with jax.set_mesh(mesh):
            return jitted(state, frozen, batch, key)

    run.lower = lambda *args: _lower(jitted, mesh, *args)
    shardings = {"state": state_sh, "frozen": frozen_sh, "batch": batch_sh}
    return run, shardings


def _lower(jitted, mesh, *args):
    with jax.set_mesh(mesh):
        return jitted.lower(*args)
