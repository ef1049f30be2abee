"""Supervised fine-tuning of a QA policy: ``python -m fgjax.sft --config=configs/sft_tiny.py``.

Teacher-forced cross-entropy on ``prompt -> answer``, counted on answer tokens only (the answer
ends with eos, which the policy must learn to emit). Prompts are the ``text`` field of
``{split}.json`` followed by the answer marker, exactly the prompt PPO samples from
(``fgjax.data.ppo_prompts``; cut to ``sft.max_prompt_len`` tokens, the marker kept);
answers are the first reference answer or the feedback file's ``gold``. Decoder-only
models read ``[left-aligned prompt ; answer]``, T5 encodes the prompt and decodes the
answer (``fgjax.trainer.forward``).

Evaluations log ``eval/perplexity`` (per answer token) on the evaluation rows; the run writes
the final model as an HF directory ``<workdir>/hf`` (with the tokenizer) for PPO, and
``<workdir>/sft_report.json`` with the perplexity before and after training.
"""

from __future__ import annotations

import json
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fgjax import runner
from fgjax.config import RUNNER_SCHEMA, CommandLine, choice, integer, number, path
from fgjax.data import load_feedback_split, load_prompts_split, rm_builders
from fgjax.data.rm_tokenize import encode_answers, encode_prompts
from fgjax.errors import ConfigError
from fgjax.trainer import supervised
from fgjax.trainer.forward import response_outputs

SFT_SCHEMA = {
    **RUNNER_SCHEMA,
    **supervised.MODEL_SCHEMA,
    "data.dir": path("", "QA-Feedback folder with {split}.json", optional=False),
    "data.split": choice("dev", "split to train on", ("train", "dev", "test")),
    "data.answer": choice(
        "reference", "target answer: first reference or feedback gold", ("reference", "gold")
    ),
    "data.num_train": integer(0, "first N prompts of the split to train on; 0 = all", minimum=0),
    "data.num_eval": integer(
        0,
        "prompts for eval/perplexity: the first N of the split "
        "(the training ones when num_train covers them); 0 = all",
        minimum=0,
    ),
    "sft.batch_size": integer(8, "rows per step; a multiple of the data*fsdp devices", minimum=1),
    "sft.eval_batch_size": integer(16, "rows per evaluation batch", minimum=1),
    "sft.learning_rate": number(1e-3, "Adam learning rate", minimum=0.0),
    "sft.max_prompt_len": integer(64, "prompt tokens (text cut, answer marker kept)", minimum=1),
    "sft.max_answer_len": integer(
        64, "answer tokens incl. eos (longer answers are cut)", minimum=1
    ),
}


def load_examples(config) -> tuple[list[str], list[str]]:
    """``(prompts, answers)`` of ``data.split``."""
    prompts = load_prompts_split(config.data.dir, config.data.split)
    if config.data.answer == "reference":
        missing = [i for i, p in enumerate(prompts) if not p.answers]
        if missing:
            raise ConfigError(f"data.answer='reference': records {missing[:5]} have no answer")
        return [rm_builders.policy_rm_prompt(p, with_passages=True) for p in prompts], [
            p.answers[0] for p in prompts
        ]
    feedback = load_feedback_split(config.data.dir, config.data.split)
    by_question = {r.question: r.gold for r in feedback}
    missing = [i for i, p in enumerate(prompts) if p.question not in by_question]
    if missing:
        raise ConfigError(f"data.answer='gold': prompts {missing[:5]} have no feedback record")
    return [rm_builders.policy_rm_prompt(p, with_passages=True) for p in prompts], [
        by_question[p.question] for p in prompts
    ]


def tokenize(tokenizer, prompts, answers, max_prompt_len: int, max_answer_len: int) -> dict:
    """``prompt_ids/mask [N, P]`` (left-padded) and ``answer_ids/mask [N, A]`` (answer + eos)."""
    prompt_ids = encode_prompts(tokenizer, list(prompts), max_prompt_len)
    answer_ids, _ = encode_answers(tokenizer, answers)
    pad = tokenizer.pad_token_id
    return {
        **supervised.pad_prompts(prompt_ids, max_prompt_len, pad),
        **supervised.pad_answers(answer_ids, max_answer_len, pad),
    }


def make_loss_fn(model, pad_id: int):
    """``loss_fn(params, batch) -> (mean NLL per answer token, {"sum/nll", "sum/tokens"})``."""

    def loss_fn(params, batch):
        logits = response_outputs(
            model, params, batch["prompt_ids"], batch["prompt_mask"], batch["answer_ids"],
            batch["answer_mask"], pad_id,
        )  # fmt: skip
        nll = optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), batch["answer_ids"]
        )
        mask = batch["answer_mask"].astype(jnp.float32)
        total, tokens = jnp.sum(nll * mask), jnp.sum(mask)
        return total / jnp.maximum(tokens, 1.0), {"sum/nll": total, "sum/tokens": tokens}

    return loss_fn


def perplexity(trainer, params, arrays, batch_size: int) -> float:
    totals = supervised.summed_metrics(trainer, params, arrays, batch_size)
    return math.exp(totals["sum/nll"] / max(totals["sum/tokens"], 1.0))


def run(command_line: CommandLine) -> dict:
    config = command_line.config
    supervised.validate_job_config(config, SFT_SCHEMA, ("sft.batch_size", "sft.eval_batch_size"))
    prompts, answers = load_examples(config)
    tokenizer = supervised.tokenizer_from_config(config, lambda: prompts + answers)
    cfg = config.sft
    arrays = tokenize(tokenizer, prompts, answers, cfg.max_prompt_len, cfg.max_answer_len)
    train = {k: v[: config.data.num_train or None] for k, v in arrays.items()}
    evaluation = supervised.pad_rows(
        {k: v[: config.data.num_eval or None] for k, v in arrays.items()}, cfg.eval_batch_size, {}
    )
    model, init_fn, loaded = supervised.model_from_config(
        config, tokenizer, "lm", 2, jax.random.key(config.seed)
    )
    trainer = supervised.build_trainer(
        config, model, init_fn, loaded, make_loss_fn(model, tokenizer.pad_token_id),
        cfg.learning_rate,
    )  # fmt: skip
    initial_ppl = perplexity(trainer, trainer.init_state().params, evaluation, cfg.eval_batch_size)
    logging.info("initial answer perplexity %.3f", initial_ppl)
    result = runner.run_loop(
        config,
        command_line.workdir,
        trainer.init_state,
        trainer.step,
        lambda position: supervised.batch_iterator(train, cfg.batch_size, config.seed, position),
        eval_fn=lambda state: {
            "perplexity": perplexity(trainer, state.params, evaluation, cfg.eval_batch_size)
        },
        resume_from=command_line.resume_from,
        abstract_state=trainer.abstract_state,
    )
    final_ppl = perplexity(trainer, result.state.params, evaluation, cfg.eval_batch_size)
    report = {
        "initial_perplexity": initial_ppl,
        "final_perplexity": final_ppl,
        "train_rows": int(len(train["answer_ids"])),
        "eval_rows": int(np.sum(evaluation["answer_mask"].any(axis=1))),
        "iterations": result.loop.iteration,
        "stop_reason": result.stop_reason,
    }
    supervised.export_hf(model, result.state.params, tokenizer, command_line.workdir)
    if jax.process_index() == 0:
        with open(os.path.join(command_line.workdir, "sft_report.json"), "w") as f:
            json.dump(report, f, indent=1)
    print(
        f"sft: answer perplexity {initial_ppl:.2f} -> {final_ppl:.2f} "
        f"({report['eval_rows']} eval rows, {result.loop.iteration} iterations)"
    )
    return report


if __name__ == "__main__":
    runner.main(run, schema=SFT_SCHEMA)
