"""Per-device memory of the PPO step on a mesh: parameter + optimizer bytes from the arrays'
shardings, and the compiled executable's memory analysis (argument / output / temp sizes).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python experiments/benchmarks/sharding.py --mesh 1,8,1 [--mesh 2,4,1 ...] [--family t5]

Each mesh is compared with the same step on one device; prints one table, no assertions.
"""

from __future__ import annotations

import argparse
import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import transformers  # noqa: E402

from fgjax import sharding  # noqa: E402
from fgjax.models import init_model  # noqa: E402
from fgjax.rollout import SamplingConfig  # noqa: E402
from fgjax.trainer.optim import OptimizerConfig  # noqa: E402
from fgjax.trainer.ppo import PPOConfig, PPOSetup, init_state  # noqa: E402
from fgjax.trainer.sharded import make_sharded_ppo_iteration  # noqa: E402

PAD, EOS = 0, 1


def hf_config(family: str, vocab: int):
    if family == "t5":
        return transformers.T5Config(
            vocab_size=vocab, d_model=256, d_kv=32, d_ff=1024, num_layers=2,
            num_decoder_layers=2, num_heads=8, feed_forward_proj="relu",
            pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
        )
    return transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=256,
        pad_token_id=PAD, eos_token_id=EOS, tie_word_embeddings=False,
    )


def length_reward(reward_params, batch, response_ids, response_mask):
    """Reward models are outside this measurement: +1 per response token."""
    return response_mask.astype(jnp.float32), {}


def build(family: str, vocab: int, prompts: int):
    config = hf_config(family, vocab)
    policy, policy_params = init_model(config, jax.random.key(0), "lm")
    value, value_params = init_model(config, jax.random.key(1), "value")
    setup = PPOSetup(
        policy=policy, ref=policy, value=value,
        sampling=SamplingConfig(max_new_tokens=16, eos_token_id=EOS, pad_token_id=PAD,
                                num_samples=2, temperature=1.0),
        ppo=PPOConfig(ppo_epochs=1, minibatch_size=prompts * 2, normalization="reference"),
        optimizer=OptimizerConfig(learning_rate=1e-5),
        reward_fn=length_reward, pad_id=PAD,
    )
    batch = {
        "prompt_ids": jnp.full((prompts, 32), 5, jnp.int32),
        "prompt_mask": jnp.ones((prompts, 32), jnp.int32),
    }
    return setup, policy_params, value_params, batch


def measure(setup, policy_params, value_params, batch, mesh):
    step, shardings = make_sharded_ppo_iteration(setup, mesh, batch)
    state = jax.eval_shape(lambda: init_state(setup, policy_params, value_params))
    params_bytes = sharding.per_device_bytes(state.params, shardings["state"].params)
    opt_bytes = sharding.per_device_bytes(state.opt_state, shardings["state"].opt_state)
    abstract = lambda tree, sh: jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, sh
    )
    frozen = {"ref": policy_params, "rewards": {}}
    compiled = step.lower(
        abstract(state, shardings["state"]),
        abstract(jax.eval_shape(lambda: frozen), shardings["frozen"]),
        abstract(batch, shardings["batch"]),
        jax.random.key(0),
    ).compile()
    memory = compiled.memory_analysis()
    return {
        "params": params_bytes,
        "optimizer": opt_bytes,
        "argument": memory.argument_size_in_bytes,
        "output": memory.output_size_in_bytes,
        "temp": memory.temp_size_in_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", action="append", default=None,
                        help="data,fsdp,tensor (repeatable); default 1,8,1 and 2,4,1 and 1,4,2")
    parser.add_argument("--family", choices=("t5", "llama"), default="t5")
    parser.add_argument("--vocab", type=int, default=8000)
    args = parser.parse_args()
    meshes = [tuple(int(x) for x in m.split(",")) for m in (args.mesh or ["1,8,1", "2,4,1",
                                                                          "1,4,2"])]
    prompts = 8
    setup, policy_params, value_params, batch = build(args.family, args.vocab, prompts)
    single = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    rows = [("1 device", measure(setup, policy_params, value_params, batch, single))]
    for data, fsdp, tensor in meshes:
        mesh = sharding.make_mesh(data, fsdp, tensor)
        rows.append((f"data={data} fsdp={fsdp} tensor={tensor}",
                     measure(setup, policy_params, value_params, batch, mesh)))
    base = rows[0][1]
    print(f"PPO step memory per device, {args.family} policy+value (vocab {args.vocab}), "
          f"{jax.device_count()} {jax.devices()[0].platform} devices")
    header = f"{'mesh':28} {'params+opt MiB':>15} {'ratio':>7} {'argument':>10} {'output':>10} " \
             f"{'temp':>10}"
    print(header)
    print("-" * len(header))
    mib = lambda b: b / 2**20
    for name, m in rows:
        state = m["params"] + m["optimizer"]
        ratio = state / (base["params"] + base["optimizer"])
        print(f"{name:28} {mib(state):15.2f} {ratio:7.3f} {mib(m['argument']):10.2f} "
              f"{mib(m['output']):10.2f} {mib(m['temp']):10.2f}")
    print("(ratio = per-device params+optimizer bytes / one device's; argument/output/temp in "
          "MiB from compiled.memory_analysis())")


if __name__ == "__main__":
    main()
