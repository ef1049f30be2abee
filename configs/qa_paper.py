"""The paper's QA-Feedback fine-grained RLHF run (T5-large policy, T5-base value), on a TPU pod.

    ./launch_tpu.sh --name fg --zone us-central2-b --type v4-32 --config configs/qa_paper.py \
        --workdir gs://BUCKET/fg_qa -- --config.data.dir=gs://... (paths to your checkpoints)

Numbers from the official release's ``fine_grained_config.yml``; ``ppo.normalization =
"reference"`` reproduces its whitening and gradient accumulation exactly.
"""

from fgjax.trainer.ppo_config import ppo_defaults


def get_config():
    config = ppo_defaults()
    config.num_iterations = 10_000  # the release's total episodes / rollout size, rounded
    config.eval_every = 100
    config.checkpoint.every = 100
    config.checkpoint.keep = 3
    config.checkpoint.keep_best = 1
    config.mesh.data = 1
    config.mesh.fsdp = -1  # FSDP over every chip of the slice
    config.mesh.tensor = 1
    config.data.train_split = "train"
    config.data.eval_split = "dev"
    config.data.eval_prompts = 500
    config.data.max_prompt_len = 1024
    config.data.max_rm_prompt_len = 1024
    config.model.dtype = "bfloat16"
    config.sampling.max_new_tokens = 200
    config.sampling.num_samples = 4
    config.sampling.temperature = 0.7
    config.sampling.top_k = 20
    config.ppo.prompts_per_rollout = 64
    config.ppo.minibatch_size = 64
    config.ppo.kl_coef = 0.3
    config.ppo.epochs = 4
    config.ppo.normalization = "reference"
    config.optim.learning_rate = 1e-5
    config.optim.eps = 1e-5
    config.optim.warmup_steps = 400  # 100 x epochs
    config.guards.kl_threshold = 10.0
    config.guards.kl_strikes = 5
    config.rewards.use = ("r1", "r2", "r3")
    config.rewards.r1.positive, config.rewards.r1.negative = 0.3, -0.3
    config.rewards.r2.positive, config.rewards.r2.negative = 0.5, -0.5
    config.rewards.r3.scale, config.rewards.r3.bias = 0.3, 0.0
    return config
