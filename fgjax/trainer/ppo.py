"""One compiled PPO iteration: rollout -> score -> advantages -> update.

``make_ppo_iteration(setup)`` returns ``ppo_iteration(state, frozen, batch, key) -> (state,
metrics)``, a single ``jax.jit`` with the state donated. The pieces (``collect_experience``,
``compute_advantages``, ``update``) are plain functions so the host-reward path can compile
them separately with the host scorer in between.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from fgjax import rl
from fgjax.models import Model
from fgjax.rollout import Rollout, SamplingConfig, repeat_batch, sample
from fgjax.trainer.forward import response_outputs
from fgjax.trainer.optim import (
    OptimizerConfig,
    clip_each_model,
    make_optimizer,
)

NORMALIZATIONS = ("standard", "reference")

# reward_fn(reward_params, batch, response_ids [R, N], response_mask [R, N])
#   -> (dense_rewards [R, N], metrics {name: scalar})
RewardFn = Callable[[Any, dict, jax.Array, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    kl_coef: float = 0.3
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    pg_coef: float = 1.0
    vf_coef: float = 1.0
    entropy_coef: float = 0.0
    ppo_epochs: int = 4
    minibatch_size: int = 4  # rollout rows (prompts x samples) per minibatch
    whiten_rewards: bool = True
    normalization: str = "standard"  # "standard" | "reference" (the release's quirks)
    policy_value_sharing: bool = False

    def __post_init__(self):
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"ppo.normalization={self.normalization!r}; allowed {NORMALIZATIONS}")
        if self.ppo_epochs < 1 or self.minibatch_size < 1:
            raise ValueError("ppo.ppo_epochs and ppo.minibatch_size must be >= 1")


@dataclasses.dataclass(frozen=True)
class PPOSetup:
    """Everything static about a PPO run (hashable; closed over by the compiled step)."""

    policy: Model  # head "lm", or "lm_value" when the policy shares its value head
    ref: Model  # frozen reference policy, head "lm"
    value: Model | None  # separate value model (head "value"); None when sharing
    sampling: SamplingConfig
    ppo: PPOConfig
    optimizer: OptimizerConfig
    reward_fn: RewardFn
    pad_id: int

    def __post_init__(self):
        sharing = self.ppo.policy_value_sharing
        if sharing and (self.policy.head != "lm_value" or self.value is not None):
            raise ValueError(
                "policy_value_sharing needs a policy with head 'lm_value' and no value model"
            )
        if not sharing and (self.policy.head != "lm" or self.value is None):
            raise ValueError(
                "without policy_value_sharing the policy has head 'lm' and a value model is given"
            )

    @property
    def tx(self) -> optax.GradientTransformation:
        return make_optimizer(self.optimizer)

    def optimizer_steps_per_iteration(self, rollout_rows: int) -> int:
        if self.ppo.normalization == "reference":
            return self.ppo.ppo_epochs  # gradients accumulate; one step per epoch
        return self.ppo.ppo_epochs * (rollout_rows // self.ppo.minibatch_size)


@flax.struct.dataclass
class PPOState:
    step: jax.Array  # PPO iterations done
    params: dict  # {"policy": ..., "value": ...} ("value" absent when sharing)
    opt_state: Any
    nonfinite_skips: jax.Array  # optimizer updates skipped for a non-finite loss, in total


def init_state(setup: PPOSetup, policy_params, value_params=None) -> PPOState:
    """A fresh state holding *copies* of the parameters: the compiled step donates the state,
    and the caller's arrays (often also the frozen reference) must stay valid."""
    params = {"policy": policy_params}
    if value_params is not None:
        params["value"] = value_params
    params = jax.tree.map(jnp.copy, params)
    return PPOState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=setup.tx.init(params),
        nonfinite_skips=jnp.zeros((), jnp.int32),
    )


def _policy_and_values(
    setup: PPOSetup, params, prompt_ids, prompt_mask, response_ids, response_mask
):
    """Policy logits and values ``[R, N]`` (values zeroed outside the response)."""
    outputs = response_outputs(
        setup.policy,
        params["policy"],
        prompt_ids,
        prompt_mask,
        response_ids,
        response_mask,
        setup.pad_id,
    )
    if setup.ppo.policy_value_sharing:
        logits, values = outputs
    else:
        logits = outputs
        values = response_outputs(
            setup.value,
            params["value"],
            prompt_ids,
            prompt_mask,
            response_ids,
            response_mask,
            setup.pad_id,
        )
    return logits, values.astype(jnp.float32) * response_mask


def rollout(setup: PPOSetup, params, batch, key) -> Rollout:
    """Sample ``num_samples`` responses per prompt from the current policy."""
    policy_lm = setup.policy.with_head("lm")
    return sample(
        policy_lm, params["policy"], batch["prompt_ids"], batch["prompt_mask"], key, setup.sampling
    )


def collect_experience(setup: PPOSetup, params, frozen, batch, key):
    """Sample, then score (see ``score_rollout``)."""
    return score_rollout(setup, params, frozen, batch, rollout(setup, params, batch, key))


def score_rollout(setup: PPOSetup, params, frozen, batch, sampled: Rollout):
    """Old log-probs, reference log-probs, values and KL-penalised dense rewards, all held
    fixed for the update. Returns the experience dict and rollout metrics."""
    response_ids, response_mask = sampled.response_ids, sampled.response_mask
    prompt_ids, prompt_mask = repeat_batch(
        (batch["prompt_ids"], batch["prompt_mask"]), setup.sampling.num_samples
    )
    logits, values = _policy_and_values(
        setup, params, prompt_ids, prompt_mask, response_ids, response_mask
    )
    ref_logits = response_outputs(
        setup.ref, frozen["ref"], prompt_ids, prompt_mask, response_ids, response_mask, setup.pad_id
    )
    maskf = response_mask.astype(jnp.float32)
    old_logprobs = rl.logprobs_from_logits(logits, response_ids)
    ref_logprobs = rl.logprobs_from_logits(ref_logits, response_ids)
    rewards, reward_metrics = setup.reward_fn(frozen["rewards"], batch, response_ids, response_mask)
    penalized, kl = rl.kl_penalized_rewards(
        rewards, old_logprobs, ref_logprobs, maskf, setup.ppo.kl_coef
    )
    experience = dict(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        old_logprobs=old_logprobs * maskf,
        values=values,
        rewards=penalized,
    )
    seq_sum = lambda x: jnp.mean(jnp.sum(x * maskf, axis=1))
    metrics = {
        **reward_metrics,
        "reward/raw": seq_sum(rewards),
        "reward/penalized": seq_sum(penalized),
        "kl/mean": seq_sum(kl),
        "policy/entropy_rollout": rl.masked_mean(rl.entropy_from_logits(logits), maskf),
        "response/length": jnp.mean(jnp.sum(maskf, axis=1)),
        # Share of responses cut at max_new_tokens without an EOS.
        "response/truncated": jnp.mean(
            (response_mask[:, -1] > 0) & (response_ids[:, -1] != setup.sampling.eos_token_id)
        ),
    }
    return experience, metrics


def compute_advantages(setup: PPOSetup, experience: dict) -> dict:
    """Whitened rewards (scale only) -> GAE -> returns; advantages whitened (mean shift on)."""
    ppo = setup.ppo
    mask = experience["response_mask"].astype(jnp.float32)
    rewards = experience["rewards"]
    if ppo.whiten_rewards:
        rewards = rl.masked_whiten(rewards, mask, shift_mean=False, mode=ppo.normalization)
    advantages, returns = rl.gae(
        rewards, experience["values"], mask, ppo.gamma, ppo.lam, mode=ppo.normalization
    )
    advantages = rl.masked_whiten(advantages, mask, shift_mean=True, mode=ppo.normalization)
    return {**experience, "advantages": advantages, "returns": returns}


def _minibatch_loss(setup: PPOSetup, params, mb: dict, mean_length: jax.Array):
    ppo = setup.ppo
    mask = mb["response_mask"].astype(jnp.float32)
    logits, values = _policy_and_values(
        setup, params, mb["prompt_ids"], mb["prompt_mask"], mb["response_ids"], mb["response_mask"]
    )
    logprobs = rl.logprobs_from_logits(logits, mb["response_ids"])
    pg_sum, count = rl.ppo_policy_loss(
        logprobs, mb["old_logprobs"], mb["advantages"], mask, ppo.cliprange
    )
    vf_sum, _ = rl.ppo_value_loss(values, mb["values"], mb["returns"], mask, ppo.cliprange_value)
    entropy = rl.masked_mean(rl.entropy_from_logits(logits), mask)
    pg_loss, vf_loss = pg_sum / count, vf_sum / count
    if ppo.normalization == "reference":
        # The release weights each minibatch by its mean length over the rollout's.
        weight = jnp.mean(jnp.sum(mask, axis=1)) / mean_length
        pg_loss, vf_loss = pg_loss * weight, vf_loss * weight
    loss = ppo.pg_coef * pg_loss + ppo.vf_coef * vf_loss - ppo.entropy_coef * entropy
    ratio_clip, value_clip, approx_kl = rl.ppo_diagnostics(
        logprobs, mb["old_logprobs"], values, mb["values"], mask, ppo.cliprange, ppo.cliprange_value
    )
    aux = {
        "loss/total": loss,
        "loss/policy": pg_loss,
        "loss/value": vf_loss,
        "policy/entropy": entropy,
        "policy/clipfrac": ratio_clip,
        "value/clipfrac": value_clip,
        "policy/approx_kl": approx_kl,
    }
    return loss, aux


def _apply_if_finite(setup: PPOSetup, params, opt_state, grads, loss):
    grads, grad_norm = clip_each_model(grads, setup.optimizer.max_grad_norm)
    updates, new_opt_state = setup.tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    return keep(new_params, params), keep(new_opt_state, opt_state), grad_norm, ~finite


def update(setup: PPOSetup, state: PPOState, experience: dict, key: jax.Array):
    """``ppo_epochs`` x minibatches by nested ``lax.scan``. Standard: shuffled minibatches, one
    optimizer step each. Reference: the release's order, gradients summed, one step per epoch."""
    ppo = setup.ppo
    rows = experience["response_ids"].shape[0]
    n_mb = rows // ppo.minibatch_size
    mean_length = jnp.mean(jnp.sum(experience["response_mask"], axis=1).astype(jnp.float32))
    grad_fn = jax.value_and_grad(
        lambda p, mb: _minibatch_loss(setup, p, mb, mean_length), has_aux=True
    )

    def split(perm):
        return jax.tree.map(
            lambda x: x[perm].reshape((n_mb, ppo.minibatch_size) + x.shape[1:]), experience
        )

    def step_per_minibatch(carry, mb):
        params, opt_state, skips = carry
        (loss, aux), grads = grad_fn(params, mb)
        params, opt_state, grad_norm, skipped = _apply_if_finite(
            setup, params, opt_state, grads, loss
        )
        return (params, opt_state, skips + skipped), {**aux, "optim/grad_norm": grad_norm}

    def accumulated_epoch(params, opt_state, skips):
        def accumulate(carry, mb):
            grads_sum, loss_sum = carry
            (loss, aux), grads = grad_fn(params, mb)
            return (jax.tree.map(jnp.add, grads_sum, grads), loss_sum + loss), aux

        zeros = jax.tree.map(jnp.zeros_like, params)
        minibatches = split(jnp.arange(rows))  # the release walks the rollout in order
        (grads, loss), aux = jax.lax.scan(accumulate, (zeros, jnp.float32(0)), minibatches)
        params, opt_state, grad_norm, skipped = _apply_if_finite(
            setup, params, opt_state, grads, loss
        )
        aux["optim/grad_norm"] = jnp.broadcast_to(grad_norm, (n_mb,))
        return (params, opt_state, skips + skipped), aux

    def epoch(carry, epoch_key):
        if ppo.normalization == "reference":
            return accumulated_epoch(*carry)
        minibatches = split(jax.random.permutation(epoch_key, rows))
        return jax.lax.scan(step_per_minibatch, carry, minibatches)

    init = (state.params, state.opt_state, jnp.zeros((), jnp.int32))
    (params, opt_state, skips), aux = jax.lax.scan(
        epoch, init, jax.random.split(key, ppo.ppo_epochs)
    )
    # Like the release, report the last epoch's losses (averaged over its minibatches).
    metrics = jax.tree.map(lambda x: jnp.mean(x[-1]), aux)
    metrics["guard/nonfinite_skipped"] = skips
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        nonfinite_skips=state.nonfinite_skips + skips,
    )
    return new_state, metrics


def ppo_iteration_fn(setup: PPOSetup):
    """The un-jitted iteration (for tests and custom compilation)."""

    def ppo_iteration(state: PPOState, frozen, batch, key):
        sample_key, update_key = jax.random.split(jax.random.fold_in(key, state.step))
        experience, metrics = collect_experience(setup, state.params, frozen, batch, sample_key)
        experience = compute_advantages(setup, experience)
        state, update_metrics = update(setup, state, experience, update_key)
        metrics = {**metrics, **update_metrics}
        metrics["optim/learning_rate"] = state.opt_state.hyperparams["learning_rate"]
        return state, metrics

    return ppo_iteration


def make_ppo_iteration(setup: PPOSetup, in_shardings=None, out_shardings=None):
    """``ppo_iteration(state, frozen, batch, key) -> (state, metrics)`` as one ``jax.jit``."""
    kwargs = {}
    if in_shardings is not None:
        kwargs = dict(in_shardings=in_shardings, out_shardings=out_shardings)
    return jax.jit(ppo_iteration_fn(setup), donate_argnums=0, **kwargs)
