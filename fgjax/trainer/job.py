"""The PPO job behind ``python -m fgjax.train``: load models and data from the config, compile
the sharded ``ppo_iteration`` once, and hand it to the shared runner (checkpoints, resume,
preemption, metrics)."""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from fgjax import errors, runner
from fgjax.config import check_runner_config
from fgjax.data.ppo_prompts import batches_from, qa_prompt_arrays
from fgjax.data.qa_feedback_files import load_prompts_split
from fgjax.models import load_backbone_with_new_head, load_pretrained, save_pretrained
from fgjax.rewards import check_same_tokenizer, load_reward_models, make_reward_fn
from fgjax.rollout import sample
from fgjax.segments import build_segment_tables, segment_end_masks
from fgjax.tokenizers import load_tokenizer
from fgjax.trainer import ppo_config as pc
from fgjax.trainer.ppo import PPOSetup, init_state
from fgjax.trainer.sharded import make_sharded_ppo_iteration

log = logging.getLogger(__name__)
REWARD_STATS_FILE = "reward_stats.json"
POLICY_EXPORT_DIR = "policy_hf"


def read_reward_stats(path: str) -> tuple[float, float]:
    """``(mean, std)`` of a sequence RM's training scores (``reward_stats.json``)."""
    if os.path.isdir(path):
        path = os.path.join(path, REWARD_STATS_FILE)
    if not os.path.isfile(path):
        raise errors.UserError(
            f"{path}: missing; sequence reward models need the mean/std of their training "
            "scores (written by fgjax.train_rm) or rewards.<name>.stats"
        )
    with open(path) as f:
        stats = json.load(f)
    try:
        return float(stats["mean"]), float(stats["std"])
    except (KeyError, TypeError, ValueError) as err:
        raise errors.UserError(f"{path}: needs numeric 'mean' and 'std' ({err})") from None


def check_reward_tokenizers(tokenizer, specs, rm_models) -> None:
    """Fused RMs read the policy's token ids: their tokenizers (when saved with them) and
    vocabulary sizes must match the policy's."""
    saved = {}
    for spec in specs:
        if os.path.isfile(os.path.join(spec.checkpoint, "tokenizer_config.json")):
            saved[spec.name] = load_tokenizer(spec.checkpoint)
        vocab = rm_models[spec.name].config.vocab_size
        if vocab < len(tokenizer):
            raise errors.VocabularyMismatchError(
                f"reward model {spec.name!r} has a vocabulary of {vocab} ids but the policy "
                f"tokenizer has {len(tokenizer)}; fused reward models must share the policy "
                "tokenizer"
            )
    try:
        check_same_tokenizer(tokenizer, saved)
    except ValueError as err:
        raise errors.VocabularyMismatchError(str(err)) from None


def segment_fn_for(tokenizer, vocab_size: int):
    tables = build_segment_tables(tokenizer, vocab_size=vocab_size).as_jax()

    def segment_fn(response_ids, response_mask):
        masks = segment_end_masks(response_ids, response_mask, tables)
        return {"sentence": masks["sentence_end"], "subsentence": masks["subsentence_end"]}

    return segment_fn


def _load_prompts(config, tokenizer, split: str):
    prompts = load_prompts_split(config.data.dir, split)
    return qa_prompt_arrays(
        prompts, tokenizer, config.data.max_prompt_len, config.data.max_rm_prompt_len
    )


def run(command_line, answer_metrics=None) -> runner.RunResult:
    """The PPO job. ``answer_metrics(texts) -> {name: float}``, when given, also scores the
    greedy evaluation answers (decoded, in eval-prompt order) at every evaluation, e.g. with an
    exact oracle; its metrics are logged next to the reward models'."""
    config, workdir = command_line.config, command_line.workdir or command_line.config.workdir
    if not workdir:
        raise errors.ConfigError("no workdir: pass --workdir=DIR (or set config key 'workdir')")
    runner.validate_config(config, pc.PPO_SCHEMA)
    check_runner_config(config)
    mesh = runner.mesh_from_config(config)
    pc.check_ppo_config(config, mesh.shape["data"] * mesh.shape["fsdp"])
    dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
    key_value, key_policy_head = jax.random.split(jax.random.key(config.seed))

    tokenizer = load_tokenizer(config.model.tokenizer)
    sharing = config.ppo.policy_value_sharing
    if sharing:
        policy, policy_params = load_backbone_with_new_head(
            config.model.policy, "lm_value", key_policy_head, dtype
        )
        value, value_params = None, None
    else:
        policy, policy_params = load_pretrained(config.model.policy, "lm", dtype)
        value, value_params = load_backbone_with_new_head(
            config.model.value or config.model.policy, "value", key_value, dtype
        )
    ref, ref_params = load_pretrained(config.model.policy, "lm", dtype)

    stats = {
        name: read_reward_stats(config.rewards[name].stats or config.rewards[name].checkpoint)
        for name in config.rewards.use
        if pc.REWARD_SLOTS[name][0] == "seq_reg"
    }
    specs = pc.reward_specs(config, stats)
    rm_models, rm_params = load_reward_models(specs, dtype)
    check_reward_tokenizers(tokenizer, specs, rm_models)
    reward_fn = make_reward_fn(
        rm_models,
        specs,
        segment_fn_for(tokenizer, policy.config.vocab_size),
        tokenizer.pad_token_id,
    )

    train_arrays = _load_prompts(config, tokenizer, config.data.train_split)
    rows = config.ppo.prompts_per_rollout * config.sampling.num_samples
    steps = (
        config.ppo.epochs
        if config.ppo.normalization == "reference"
        else config.ppo.epochs * rows // config.ppo.minibatch_size
    )
    setup = PPOSetup(
        policy=policy,
        ref=ref,
        value=value,
        sampling=pc.sampling_config(config, tokenizer.eos_token_id, tokenizer.pad_token_id),
        ppo=pc.ppo_config(config),
        optimizer=pc.optimizer_config(config, steps),
        reward_fn=reward_fn,
        pad_id=tokenizer.pad_token_id,
    )
    batch_example = next(batches_from(train_arrays, config.ppo.prompts_per_rollout, 0, 0))
    step, shardings = make_sharded_ppo_iteration(setup, mesh, batch_example, rm_models)
    frozen = jax.device_put({"ref": ref_params, "rewards": rm_params}, shardings["frozen"])
    del ref_params, rm_params

    def init_state_fn():
        return jax.device_put(init_state(setup, policy_params, value_params), shardings["state"])

    abstract_state = jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        jax.eval_shape(lambda: init_state(setup, policy_params, value_params)),
        shardings["state"],
    )
    key = jax.random.key(config.seed)

    def step_fn(state, batch):
        return step(state, frozen, jax.device_put(batch, shardings["batch"]), key)

    def batch_iter_factory(position):
        return batches_from(train_arrays, config.ppo.prompts_per_rollout, config.seed, position)

    eval_fn = None
    if config.eval_every:
        eval_fn = _make_eval_fn(config, setup, tokenizer, frozen, mesh, answer_metrics)
    result = runner.run_loop(
        config,
        workdir,
        init_state_fn,
        step_fn,
        batch_iter_factory,
        eval_fn,
        resume_from=command_line.resume_from,
        abstract_state=abstract_state,
    )
    if jax.process_index() == 0:
        export = os.path.join(workdir, POLICY_EXPORT_DIR)
        save_pretrained(
            policy.with_head("lm"), jax.device_get(result.state.params["policy"]), export
        )
        tokenizer.save_pretrained(export)
        log.info("policy exported to %s (%s)", export, result.stop_reason)
    return result


def _make_eval_fn(config, setup: PPOSetup, tokenizer, frozen, mesh, answer_metrics=None):
    """Greedy responses to the first ``data.eval_prompts`` eval prompts, scored by the fused
    reward models: ``reward`` (mean dense-reward sum, ranks checkpoints) and per-RM metrics;
    plus ``answer_metrics`` of the decoded answers when given."""
    arrays = _load_prompts(config, tokenizer, config.data.eval_split)
    count = min(config.data.eval_prompts, len(arrays["prompt_ids"]))
    devices = mesh.shape["data"] * mesh.shape["fsdp"]
    count -= count % devices
    if count == 0:
        raise errors.ConfigError(
            f"config key 'data.eval_prompts' = {config.data.eval_prompts}: needs at least "
            f"{devices} prompts (one per data*fsdp device)"
        )
    batch = {k: v[:count] for k, v in arrays.items()}
    greedy = pc.sampling_config(config, tokenizer.eos_token_id, tokenizer.pad_token_id, True)
    policy_lm = setup.policy.with_head("lm")

    @jax.jit
    def evaluate(params, frozen, batch):
        rollout = sample(
            policy_lm,
            params["policy"],
            batch["prompt_ids"],
            batch["prompt_mask"],
            jax.random.key(0),
            greedy,
        )
        rewards, metrics = setup.reward_fn(
            frozen["rewards"], batch, rollout.response_ids, rollout.response_mask
        )
        lengths = jnp.sum(rollout.response_mask, axis=1)
        metrics = {
            **metrics,
            "reward": jnp.mean(jnp.sum(rewards, axis=1)),
            "length": jnp.mean(lengths.astype(jnp.float32)),
        }
        return metrics, rollout

    def eval_fn(state):
        with jax.set_mesh(mesh):
            metrics, rollout = evaluate(state.params, frozen, batch)
        if answer_metrics is None:
            return metrics
        ids, mask = jax.device_get((rollout.response_ids, rollout.response_mask))
        texts = tokenizer.batch_decode(np.where(mask > 0, ids, tokenizer.pad_token_id),
                                       skip_special_tokens=True,
                                       clean_up_tokenization_spaces=False)
        return {**metrics, **answer_metrics([t.strip() for t in texts])}

    return eval_fn
