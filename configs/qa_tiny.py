"""PPO with fused fine-grained rewards on QA-Feedback prompts, shrunk for a CPU.

    python -m fgjax.train --config=configs/qa_tiny.py --workdir=/tmp/fg_qa \
        --config.data.dir=../shared/data/qa_feedback \
        --config.model.tokenizer=TOK --config.model.policy=SFT_DIR \
        --config.rewards.r1.checkpoint=R1 --config.rewards.r2.checkpoint=R2 \
        --config.rewards.r3.checkpoint=R3

Checkpoints come from ``fgjax.sft`` and ``fgjax.train_rm`` (HF directories). Every key and its
meaning: ``python -m fgjax.train --helpfull`` or ``fgjax/trainer/ppo_config.py``.
"""

from fgjax.trainer.ppo_config import ppo_defaults


def get_config():
    config = ppo_defaults()
    config.num_iterations = 20  # PPO rollouts
    config.eval_every = 5  # greedy eval on data.eval_prompts; ranks the best checkpoint
    config.checkpoint.every = 5
    config.data.train_split = "dev"  # only dev ships in shared/; use "train" with the release
    config.data.eval_split = "dev"
    config.data.eval_prompts = 8
    config.data.max_prompt_len = 96  # tokens of "<question + passages> answer:" (cut)
    config.data.max_rm_prompt_len = 96
    config.sampling.max_new_tokens = 32
    config.ppo.prompts_per_rollout = 8
    config.ppo.minibatch_size = 8
    config.optim.learning_rate = 1e-4  # tiny models learn slowly at the paper's 1e-5
    config.optim.warmup_steps = 10
    return config
