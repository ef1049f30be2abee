"""The synthetic fine-grained QA pipeline, end to end on a CPU (``python -m fgjax.train``).

Stages, each cached in ``<workdir>/<stage>/`` (a rerun skips finished ones):

1. ``data``: a seeded world (``fgjax.data.synthetic_qa``), its prompt files in the
   QA-Feedback schema (``train.json`` answers are demonstrations with injected errors,
   ``dev.json`` answers are gold) and a BPE tokenizer trained on the world's text.
2. ``sft``: ``fgjax.sft`` on the demonstrations -> an imperfect policy.
3. ``feedback``: 4 sampled answers per train prompt, labelled by the exact oracle ->
   ``train_feedback.json`` in the QA-Feedback schema.
4. ``rm_r1`` ... ``rm_holistic``: ``fgjax.train_rm`` on that feedback (the real builders).
5. ``ppo_fine_grained`` (R1 + R2 + R3) and ``ppo_holistic`` (preference RM): ``fgjax.train``.
6. ``evaluate``: greedy answers of SFT and both RLHF policies on held-out prompts, scored by
   the oracle; a table of error rates per type.

Every trainer is the project's real one, called with a config it would get from the command
line; this module only wires stages together.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable

import jax
import numpy as np

from fgjax import checkpoint as ckpt
from fgjax import runner, sft, train_rm
from fgjax.config import CommandLine, defaults
from fgjax.data import synthetic_qa
from fgjax.data.ppo_prompts import qa_prompt_arrays
from fgjax.data.qa_feedback_files import load_prompts_split
from fgjax.errors import ConfigError, StagePreempted
from fgjax.models import load_pretrained
from fgjax.pipelines import synthetic_report
from fgjax.pipelines.rm_agreement import SegmentAgreement
from fgjax.pipelines.synthetic_config import SYNTHETIC_SCHEMA
from fgjax.rollout import SamplingConfig, sample
from fgjax.tokenizers import load_tokenizer
from fgjax.trainer import job as ppo_job
from fgjax.trainer.ppo_config import PPO_SCHEMA

log = logging.getLogger(__name__)
DONE = "DONE.json"


def run_stage(workdir: str, name: str, build: Callable[[str], dict]) -> dict:
    """Run ``build(stage_dir)`` unless the stage finished before; returns its summary."""
    stage_dir = os.path.join(workdir, name)
    done = os.path.join(stage_dir, DONE)
    if os.path.isfile(done):
        with open(done) as f:
            summary = json.load(f)
        print(f"[{name}] cached ({stage_dir})", flush=True)
        return summary
    saved = ckpt.step_dirs(os.path.join(stage_dir, runner.CHECKPOINT_SUBDIR))
    if saved:  # a preempted trainer: it resumes from its latest checkpoint
        print(f"[{name}] resuming from its checkpoint at step {saved[-1]} ...", flush=True)
    else:
        if os.path.isdir(stage_dir):
            shutil.rmtree(stage_dir)  # an interrupted attempt without a checkpoint: start again
        os.makedirs(stage_dir)
        print(f"[{name}] running ...", flush=True)
    started = time.perf_counter()
    summary = build(stage_dir)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    with open(done + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(done + ".tmp", done)
    print(f"[{name}] done in {summary['seconds']} s", flush=True)
    return summary


def _finished(stop_reason: str, stage_dir: str) -> None:
    """A preempted trainer returns normally after its checkpoint; its stage must not be cached
    as done (``run_stage`` resumes it from that checkpoint on the next run)."""
    if stop_reason == "preempted":
        raise StagePreempted(f"preempted: {stage_dir} keeps its checkpoint; rerun the same "
                             "command to resume this stage")


def _write_json(path: str, payload) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f)
    os.replace(path + ".tmp", path)


def _tiny_model_config(config, target):
    m = config.model
    target.model.family = "gpt2"
    target.model.hidden_size = m.hidden_size
    target.model.intermediate_size = m.hidden_size * 4
    target.model.num_layers = m.num_layers
    target.model.num_heads = m.num_heads
    target.model.max_positions = m.max_positions


def _quiet_runner_config(target, iterations: int, config):
    target.seed = config.seed
    target.num_iterations = iterations
    # A crash loses at most checkpoint.every steps: run_stage resumes from the last one.
    target.checkpoint.every = min(iterations, config.checkpoint.every)
    target.checkpoint.keep_best = 0
    target.logging.progress = False
    target.logging.plot = False
    target.logging.tensorboard = False
    target.guards.kl_strikes = 0
    target.mesh.data, target.mesh.fsdp, target.mesh.tensor = -1, 1, 1


def build_data(config, stage_dir: str) -> dict:
    task = synthetic_qa.make_task(config.seed, config.data.num_train, config.data.num_eval)
    train = [e.to_prompt_record() for e in task.train]
    for record, demo in zip(train, task.demonstrations):
        record["answer"] = [demo.answer]
    _write_json(os.path.join(stage_dir, "train.json"), train)
    _write_json(os.path.join(stage_dir, "dev.json"), [e.to_prompt_record() for e in task.eval])
    synthetic_qa.train_world_tokenizer(
        task.world, os.path.join(stage_dir, "tokenizer"), "bpe", config.data.vocab_size,
        examples=task.train,
    )
    demos = synthetic_qa.set_metrics(
        [synthetic_qa.annotate(d.example, d.answer) for d in task.demonstrations]
    )
    return {"demonstrations": demos}


def run_sft(config, data_dir: str, stage_dir: str) -> dict:
    target = defaults(sft.SFT_SCHEMA)
    _quiet_runner_config(target, config.sft.iterations, config)
    _tiny_model_config(config, target)
    target.data.dir, target.data.split = data_dir, "train"
    target.data.num_eval = 64
    target.tokenizer.path = os.path.join(data_dir, "tokenizer")
    target.sft.batch_size = config.sft.batch_size
    target.sft.learning_rate = config.sft.learning_rate
    target.sft.max_prompt_len = config.data.max_prompt_len
    target.sft.max_answer_len = config.data.max_new_tokens
    target.eval_every = 0
    report = sft.run(CommandLine(target, stage_dir, None))
    _finished(report["stop_reason"], stage_dir)
    return report


@functools.lru_cache(maxsize=8)
def _compiled_sampler(model, cfg: SamplingConfig):
    """One jitted sampler per (architecture, sampling config): the SFT, holistic and
    fine-grained policies share a shape, so evaluating all three compiles once."""
    return jax.jit(lambda params, ids, mask, key: sample(model, params, ids, mask, key, cfg))


def greedy_or_sampled_answers(policy_dir, tokenizer_dir, data_dir, split, config, samples):
    """Decoded answers ``[N][samples]`` of the policy at ``policy_dir`` to ``split``'s prompts
    (greedy when ``samples == 0``)."""
    tokenizer = load_tokenizer(tokenizer_dir)
    model, params = load_pretrained(policy_dir, "lm")
    arrays = qa_prompt_arrays(load_prompts_split(data_dir, split), tokenizer,
                              config.data.max_prompt_len, config.data.max_prompt_len)
    cfg = SamplingConfig(
        max_new_tokens=config.data.max_new_tokens, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, num_samples=max(samples, 1),
        temperature=config.ppo.temperature, top_k=config.ppo.top_k, greedy=samples == 0,
    )
    draw = _compiled_sampler(model, cfg)
    answers, chunk = [], 64
    for start in range(0, len(arrays["prompt_ids"]), chunk):
        ids = arrays["prompt_ids"][start : start + chunk]
        mask = arrays["prompt_mask"][start : start + chunk]
        real = len(ids)
        if real < chunk:  # static shapes: pad the last chunk with copies of its first row
            ids = np.concatenate([ids, np.repeat(ids[:1], chunk - real, 0)])
            mask = np.concatenate([mask, np.repeat(mask[:1], chunk - real, 0)])
        out = draw(params, ids, mask, jax.random.key(config.seed + start))
        rows = np.where(np.asarray(out.response_mask) > 0, np.asarray(out.response_ids),
                        tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(rows, skip_special_tokens=True,
                                       clean_up_tokenization_spaces=False)
        per = cfg.num_samples
        answers += [[t.strip() for t in texts[i * per : (i + 1) * per]] for i in range(real)]
    return answers


def build_feedback(config, data_dir: str, sft_dir: str, stage_dir: str) -> dict:
    prompts = load_prompts_split(data_dir, "train")
    examples = [synthetic_qa.example_from_prompt(p) for p in prompts]
    answers = greedy_or_sampled_answers(
        os.path.join(sft_dir, "hf"), os.path.join(data_dir, "tokenizer"), data_dir, "train",
        config, samples=4,
    )
    # The QA-Feedback schema carries fine-grained feedback on prediction 1 only; one record per
    # rotation of the four samples gives every sample its feedback (4x the R1/R2 data, the
    # same preferences). Records stay grouped by prompt, so held-out records are new prompts.
    rotations = config.rm.feedback_per_prompt
    records = [synthetic_qa.feedback_record(e, a[k:] + a[:k])
               for e, a in zip(examples, answers) for k in range(rotations)]
    for name in ("train.json", "dev.json"):
        shutil.copy(os.path.join(data_dir, name), os.path.join(stage_dir, name))
    _write_json(os.path.join(stage_dir, "train_feedback.json"), records)
    first = [synthetic_qa.annotate(e, a[0]) for e, a in zip(examples, answers)]
    return {"sft_samples": synthetic_qa.set_metrics(first)}


def run_reward_model(config, name: str, paths: dict, stage_dir: str) -> dict:
    target = defaults(train_rm.RM_SCHEMA)
    _quiet_runner_config(target, config.rm.iterations, config)
    _tiny_model_config(config, target)
    if config.rm.init == "sft":  # the policy's backbone, a fresh head
        target.model.path = paths["sft"]
    target.data.dir, target.data.split = paths["feedback"], "train"
    target.data.num_train = 0  # all examples of the first records; the rest held out
    target.data.heldout_fraction = config.rm.heldout_fraction
    target.data.num_eval = config.rm.num_eval
    target.data.num_train_eval = config.rm.num_train_eval
    target.rm.eval_batch_size = 64
    target.data.splitter = "rules"
    target.tokenizer.path = paths["tokenizer"]
    target.rm.name = name
    target.rm.batch_size = (config.rm.batch_size if name in train_rm.TOKEN_CLS
                            else config.rm.pair_batch_size)
    target.rm.learning_rate = config.rm.learning_rate
    target.rm.max_prompt_len = config.data.max_prompt_len
    target.rm.max_answer_len = config.data.max_new_tokens
    target.eval_every = 0
    report = train_rm.run(CommandLine(target, stage_dir, None))
    _finished(report.pop("stop_reason"), stage_dir)
    return {"report": report}


def run_ppo(config, variant: str, paths: dict, stage_dir: str) -> dict:
    target = defaults(PPO_SCHEMA)
    _quiet_runner_config(target, config.ppo.iterations, config)
    target.data.dir = paths["feedback"]
    target.data.train_split, target.data.eval_split = "train", "dev"
    target.data.max_prompt_len = target.data.max_rm_prompt_len = config.data.max_prompt_len
    target.model.tokenizer = paths["tokenizer"]
    target.model.policy = paths["sft"]
    target.sampling.max_new_tokens = config.data.max_new_tokens
    target.sampling.num_samples = 4
    target.sampling.temperature = config.ppo.temperature
    target.sampling.top_k = config.ppo.top_k
    p = config.ppo
    target.ppo.prompts_per_rollout = p.prompts_per_rollout
    target.ppo.minibatch_size = p.minibatch_size
    target.ppo.epochs = p.epochs
    target.ppo.kl_coef = p.kl_coef
    target.ppo.normalization = "standard"
    target.optim.learning_rate = p.learning_rate
    target.optim.warmup_steps = p.warmup_steps
    target.eval_every = p.eval_every
    target.logging.plot = True  # ppo_*/curves.png: rewards, KL, length, oracle error rate
    target.data.eval_prompts = config.data.num_eval
    if variant == "holistic":
        target.rewards.use = ("holistic",)
        target.rewards.holistic.checkpoint = paths["rm_holistic"]
        target.rewards.holistic.scale = 1.0
    else:
        target.rewards.use = ("r1", "r2", "r3")
        for name in ("r1", "r2", "r3"):
            target.rewards[name].checkpoint = paths[f"rm_{name}"]
        target.rewards.r1.weight = config.rewards.r1_weight
        target.rewards.r2.weight = config.rewards.r2_weight
        target.rewards.r3.weight = config.rewards.r3_weight
    dev = [synthetic_qa.example_from_prompt(r) for r in load_prompts_split(paths["data"], "dev")]

    agreement = SegmentAgreement(
        {name: paths[f"rm_{name}"] for name in ("r1", "r2")}, dev,
        load_tokenizer(paths["tokenizer"]), config.data.max_prompt_len, config.data.max_new_tokens,
    )

    def oracle_metrics(texts):
        results = synthetic_qa.evaluate_answers(dev[: len(texts)], texts)
        return {**{f"oracle/{name}": value for name, value in results.items()},
                **agreement(texts)}

    result = ppo_job.run(CommandLine(target, stage_dir, None), answer_metrics=oracle_metrics)
    _finished(result.stop_reason, stage_dir)
    return {"stop_reason": result.stop_reason, "iterations": result.loop.iteration}


def evaluate_policies(config, paths: dict, stage_dir: str, policies: dict | None = None) -> dict:
    """Oracle metrics of the greedy answers to the held-out prompts of each policy
    (``{name: HF dir}``; default SFT and both RLHF variants), answers in ``<name>_answers.jsonl``.
    """
    prompts = load_prompts_split(paths["data"], "dev")
    examples = [synthetic_qa.example_from_prompt(p) for p in prompts]
    policies = policies or {"SFT": paths["sft"], "holistic RLHF": paths["ppo_holistic"],
                            "fine-grained RLHF": paths["ppo_fine_grained"]}
    results = {}
    for name, policy in policies.items():
        answers = [a[0] for a in greedy_or_sampled_answers(
            policy, paths["tokenizer"], paths["data"], "dev", config, samples=0)]
        results[name] = synthetic_qa.evaluate_answers(examples, answers)
        file_name = name.split()[0].lower().replace("-", "_")
        with open(os.path.join(stage_dir, f"{file_name}_answers.jsonl"), "w") as f:
            for example, answer in zip(examples, answers):
                f.write(json.dumps({"question": example.question, "answer": answer}) + "\n")
    return {"results": results}


def stage_paths(workdir: str) -> dict:
    """Where each stage leaves what later stages read (HF directories, data folders)."""
    paths = {"data": os.path.join(workdir, "data"), "feedback": os.path.join(workdir, "feedback")}
    paths["tokenizer"] = os.path.join(paths["data"], "tokenizer")
    paths["sft"] = os.path.join(workdir, "sft", "hf")
    for name in ("r1", "r2", "r3", "holistic"):
        paths[f"rm_{name}"] = os.path.join(workdir, f"rm_{name}", "hf")
    for variant in ("fine_grained", "holistic"):
        paths[f"ppo_{variant}"] = os.path.join(workdir, f"ppo_{variant}",
                                               ppo_job.POLICY_EXPORT_DIR)
    return paths


def validate(config) -> None:
    """The schema's checks and the pipeline's own, before any stage runs."""
    runner.validate_config(config, SYNTHETIC_SCHEMA)
    if config.rm.feedback_per_prompt > 4:
        raise ConfigError(f"config key 'rm.feedback_per_prompt' = {config.rm.feedback_per_prompt}"
                          ": allowed 1..4 (one record per sample of the four)")


def run_feedback_stages(config, workdir: str) -> dict:
    """The stages up to the oracle's feedback on the SFT policy's samples: data, SFT, feedback
    (each cached in ``workdir``); returns their summaries."""
    validate(config)
    paths = stage_paths(workdir)
    summaries = {"data": run_stage(workdir, "data", lambda d: build_data(config, d))}
    summaries["sft"] = run_stage(workdir, "sft", lambda d: run_sft(config, paths["data"], d))
    summaries["feedback"] = run_stage(
        workdir, "feedback",
        lambda d: build_feedback(config, paths["data"], os.path.join(workdir, "sft"), d),
    )
    return summaries


def run(command_line: CommandLine) -> dict:
    config = command_line.config
    validate(config)
    workdir = os.path.abspath(command_line.workdir or config.workdir)
    os.makedirs(workdir, exist_ok=True)
    paths = stage_paths(workdir)
    summaries = run_feedback_stages(config, workdir)
    for name in ("r1", "r2", "r3", "holistic"):
        summaries[f"rm_{name}"] = run_stage(
            workdir, f"rm_{name}",
            lambda d, name=name: run_reward_model(config, name, paths, d),
        )
    for variant in ("fine_grained", "holistic"):
        summaries[f"ppo_{variant}"] = run_stage(
            workdir, f"ppo_{variant}",
            lambda d, variant=variant: run_ppo(config, variant, paths, d),
        )
    evaluation = run_stage(workdir, "evaluate", lambda d: evaluate_policies(config, paths, d))
    report = synthetic_report.format_results(
        evaluation["results"], summaries["feedback"]["sft_samples"],
        {name: summaries[f"rm_{name}"]["report"] for name in ("r1", "r2", "r3", "holistic")})
    print()
    print(report)
    print(f"checkpoints: {workdir}/<stage>/ ; PPO curves: {workdir}/ppo_*/curves.png "
          "(numbers: metrics.jsonl)")
    _write_json(os.path.join(workdir, "summary.json"), summaries | {"evaluate": evaluation})
    with open(os.path.join(workdir, "results.txt"), "w") as f:
        f.write(report + "\n")
    return evaluation
