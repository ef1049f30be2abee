"""Tiny PPO set-ups on random models, shared by the PPO and sharding tests."""

import jax
import jax.numpy as jnp
import numpy as np
import transformers

from fgjax.models import init_model
from fgjax.rollout import SamplingConfig
from fgjax.trainer.optim import OptimizerConfig
from fgjax.trainer.ppo import PPOConfig, PPOSetup, init_state

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


def gpt2_config():
    return transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD,
    )


def llama_config():
    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=False,
    )


def t5_config():
    return transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16,
        feed_forward_proj="relu", pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
    )


def tiny_setup(
    hf_config=None,
    normalization="standard",
    sharing=False,
    lr=3e-3,
    max_new_tokens=12,
    num_samples=2,
    ppo_epochs=2,
    minibatch_size=4,
):
    hf_config = gpt2_config() if hf_config is None else hf_config
    key_policy, key_value = jax.random.split(jax.random.key(0))
    policy, policy_params = init_model(hf_config, key_policy, head="lm_value" if sharing else "lm")
    value, value_params = (None, None) if sharing else init_model(hf_config, key_value, "value")
    setup = PPOSetup(
        policy=policy,
        ref=policy.with_head("lm"),
        value=value,
        sampling=SamplingConfig(
            max_new_tokens=max_new_tokens, eos_token_id=EOS, pad_token_id=PAD,
            num_samples=num_samples, temperature=1.0,
        ),
        ppo=PPOConfig(
            kl_coef=0.05, ppo_epochs=ppo_epochs, minibatch_size=minibatch_size,
            normalization=normalization, policy_value_sharing=sharing,
        ),
        optimizer=OptimizerConfig(learning_rate=lr, eps=1e-5),
        reward_fn=sentence_reward_fn,
        pad_id=PAD,
    )
    state = init_state(setup, policy_params, value_params)
    frozen = {"ref": policy_params, "rewards": {}}
    return setup, state, frozen


def tiny_batch(batch_size=4, prompt_len=6, seed=0):
    """Right-padded random prompts ``[B, P]`` of ragged lengths."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, size=(batch_size, prompt_len)).astype(np.int32)
    lengths = rng.integers(2, prompt_len + 1, size=batch_size)
    mask = (np.arange(prompt_len)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask > 0, ids, PAD)
    return {"prompt_ids": jnp.asarray(ids), "prompt_mask": jnp.asarray(mask)}
