"""Config keys of the synthetic fine-grained QA pipeline (``configs/synthetic_qa.py``)."""

from __future__ import annotations

from fgjax.config import RUNNER_SCHEMA, choice, defaults, integer, number

SYNTHETIC_SCHEMA = {
    **RUNNER_SCHEMA,
    "job": choice("synthetic_qa", "which job fgjax.train runs", ("synthetic_qa",)),
    "data.num_train": integer(1024, "train prompts (SFT demonstrations, feedback, PPO)", minimum=8),
    "data.num_eval": integer(256, "held-out prompts for the oracle evaluation", minimum=8),
    "data.vocab_size": integer(1024, "BPE tokenizer size trained on the world", minimum=300),
    "data.max_prompt_len": integer(
        96, "prompt tokens (the world's prompts are ~70-85)", minimum=16
    ),
    "data.max_new_tokens": integer(48, "answer tokens (SFT targets, samples, PPO)", minimum=8),
    "model.hidden_size": integer(64, "width of every tiny GPT-2 (policy, value, RMs)", minimum=8),
    "model.num_layers": integer(2, "layers", minimum=1),
    "model.num_heads": integer(4, "attention heads", minimum=1),
    "model.max_positions": integer(160, "positions: prompt + answer must fit", minimum=32),
    "sft.iterations": integer(600, "SFT steps", minimum=1),
    "sft.batch_size": integer(32, "SFT rows per step", minimum=1),
    "sft.learning_rate": number(3e-3, "SFT Adam learning rate", minimum=0.0),
    "rm.init": choice("sft", "reward models start from the SFT policy's backbone (as the paper "
                      "starts from a pretrained LM) or from scratch", ("sft", "scratch")),
    "rm.feedback_per_prompt": integer(4, "feedback records per train prompt: each of the 4 "
                                      "samples first once (1 = the schema's usual one)",
                                      minimum=1),
    "rm.iterations": integer(300, "steps per reward model", minimum=1),
    "rm.batch_size": integer(32, "R1/R2 answers per RM step", minimum=1),
    "rm.pair_batch_size": integer(16, "R3/holistic pairs per RM step (2 rows each)", minimum=1),
    "rm.learning_rate": number(2e-3, "RM Adam learning rate", minimum=0.0),
    "rm.heldout_fraction": number(0.2, "share of feedback records held out to test the RMs",
                                  minimum=0.0),
    "rm.num_eval": integer(128, "held-out RM examples from other prompts; 0 = all", minimum=0),
    "rm.num_train_eval": integer(128, "training examples the final RM report scores; 0 = all",
                                 minimum=0),
    "ppo.iterations": integer(50, "PPO iterations of each RLHF variant", minimum=1),
    "ppo.prompts_per_rollout": integer(16, "prompts per rollout (x4 samples)", minimum=8),
    "ppo.minibatch_size": integer(16, "rows per PPO minibatch", minimum=1),
    "ppo.epochs": integer(2, "PPO epochs per rollout", minimum=1),
    "ppo.kl_coef": number(0.2, "KL penalty coefficient", minimum=0.0),
    "ppo.learning_rate": number(1e-4, "policy/value Adam learning rate", minimum=0.0),
    "ppo.warmup_steps": integer(10, "optimizer warmup steps", minimum=0),
    "ppo.eval_every": integer(10, "oracle evaluation of greedy answers to the held-out prompts "
                              "every N PPO iterations (eval/oracle/* in metrics.jsonl); 0 = off",
                              minimum=0),
    "ppo.temperature": number(0.7, "sampling temperature (feedback samples and PPO)", minimum=0.0),
    "ppo.top_k": integer(20, "sampling top-k", minimum=0),
    "rewards.r1_weight": number(1.0, "weight of R1 (relevance) in fine-grained RLHF"),
    "rewards.r2_weight": number(1.0, "weight of R2 (factuality)"),
    "rewards.r3_weight": number(1.0, "weight of R3 (completeness)"),
}


def synthetic_defaults():
    return defaults(SYNTHETIC_SCHEMA)


# Command-line overrides that shrink every stage of the pipeline to seconds of compute on a CPU
# (what remains is mostly XLA compiles): the test suite's miniature and the compile-cache
# benchmark (experiments/benchmarks/compile_cache.py) run this.
MINIATURE = (
    "--config.data.num_train=64", "--config.data.num_eval=8", "--config.data.vocab_size=400",
    "--config.data.max_new_tokens=40", "--config.model.hidden_size=32",
    "--config.model.num_layers=1", "--config.model.num_heads=2",
    "--config.sft.iterations=150", "--config.sft.batch_size=8",
    "--config.rm.iterations=2", "--config.rm.batch_size=8", "--config.rm.pair_batch_size=8",
    "--config.rm.num_eval=8",
    "--config.ppo.iterations=2", "--config.ppo.prompts_per_rollout=8",
    "--config.ppo.minibatch_size=16", "--config.ppo.epochs=1", "--config.ppo.eval_every=1",
    "--config.checkpoint.every=100",
)
