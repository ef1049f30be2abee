"""The compiled PPO iteration on tiny random models: one compilation, determinism, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from fgjax.models import init_model
from fgjax.rollout import SamplingConfig
from fgjax.trainer.optim import OptimizerConfig
from fgjax.trainer.ppo import PPOConfig, PPOSetup, init_state, make_ppo_iteration, ppo_iteration_fn

VOCAB = 32
PAD, EOS, PERIOD, TARGET = 0, 1, 2, 7


def sentence_reward_fn(reward_params, batch, response_ids, response_mask):
    """Toy reward: +1 at every sentence end whose sentence contains ``TARGET``.

    A sentence ends at ``PERIOD`` or at the last response token.
    """
    del reward_params, batch
    mask = response_mask > 0
    last = mask & ~jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
    ends = mask & ((response_ids == PERIOD) | last)
    sentence_id = jnp.cumsum(ends, axis=1) - ends  # id of the sentence each token is in
    one_hot = jax.nn.one_hot(sentence_id, response_ids.shape[1]) * mask[..., None]
    has_target = (one_hot * (response_ids == TARGET)[..., None]).sum(1) > 0  # [B, S]
    hit = jnp.take_along_axis(has_target, sentence_id, axis=1) & ends
    rewards = hit.astype(jnp.float32)
    return rewards, {"reward/toy": jnp.mean(rewards.sum(1))}


def tiny_setup(normalization="standard", sharing=False, lr=3e-3, max_new_tokens=12):
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD,
    )
    key_policy, key_value = jax.random.split(jax.random.key(0))
    policy, policy_params = init_model(config, key_policy, head="lm_value" if sharing else "lm")
    ref = policy.with_head("lm")
    value, value_params = (None, None) if sharing else init_model(config, key_value, head="value")
    setup = PPOSetup(
        policy=policy,
        ref=ref,
        value=value,
        sampling=SamplingConfig(
            max_new_tokens=max_new_tokens, eos_token_id=EOS, pad_token_id=PAD, num_samples=2,
            temperature=1.0, top_k=0,
        ),
        ppo=PPOConfig(
            kl_coef=0.05, ppo_epochs=2, minibatch_size=4, normalization=normalization,
            policy_value_sharing=sharing,
        ),
        optimizer=OptimizerConfig(learning_rate=lr, eps=1e-5),
        reward_fn=sentence_reward_fn,
        pad_id=PAD,
    )
    state = init_state(setup, policy_params, value_params)
    frozen = {"ref": policy_params, "rewards": {}}
    return setup, state, frozen


def tiny_batch(batch_size=4, prompt_len=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, size=(batch_size, prompt_len)).astype(np.int32)
    lengths = rng.integers(2, prompt_len + 1, size=batch_size)
    mask = (np.arange(prompt_len)[None] < lengths[:, None]).astype(np.int32)
    return {"prompt_ids": jnp.asarray(np.where(mask > 0, ids, PAD)), "prompt_mask": jnp.asarray(mask)}


def test_three_iterations_compile_once_and_are_deterministic():
    traces = []
    setup, state, frozen = tiny_setup()
    inner = ppo_iteration_fn(setup)

    def counted(state, frozen, batch, key):
        traces.append(1)
        return inner(state, frozen, batch, key)

    step = jax.jit(counted, donate_argnums=0)
    batch = tiny_batch()
    history = []
    for i in range(3):
        state, metrics = step(state, frozen, batch, jax.random.key(1))
        history.append(jax.device_get(metrics))
    assert len(traces) == 1
    assert int(state.step) == 3
    assert all(np.isfinite(v) for m in history for v in m.values())

    _, state2, frozen2 = tiny_setup()
    step2 = make_ppo_iteration(setup)
    for i in range(3):
        state2, metrics2 = step2(state2, frozen2, batch, jax.random.key(1))
    np.testing.assert_array_equal(jax.device_get(metrics2["reward/toy"]), history[-1]["reward/toy"])
    chex_equal = jax.tree.map(
        lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), state.params, state2.params
    )
    assert all(jax.tree.leaves(chex_equal))


@pytest.mark.parametrize("normalization, sharing", [("standard", False), ("reference", True)])
def test_toy_reward_rises(normalization, sharing):
    setup, state, frozen = tiny_setup(normalization, sharing)
    step = make_ppo_iteration(setup)
    batch = tiny_batch(batch_size=8)
    rewards = []
    for i in range(30):
        state, metrics = step(state, frozen, batch, jax.random.key(i))
        rewards.append(float(metrics["reward/toy"]))
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last > first + 0.3, (first, last, rewards)


def test_nonfinite_loss_skips_update():
    setup, state, frozen = tiny_setup()

    def nan_reward(params, batch, ids, mask):
        return jnp.full(ids.shape, jnp.nan), {}

    import dataclasses

    setup = dataclasses.replace(setup, reward_fn=nan_reward)
    before = jax.tree.map(np.asarray, state.params)
    state, metrics = make_ppo_iteration(setup)(state, frozen, tiny_batch(), jax.random.key(0))
    assert int(metrics["guard/nonfinite_skipped"]) > 0
    same = jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)), before, state.params)
    assert all(jax.tree.leaves(same))
