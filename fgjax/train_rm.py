"""Reward-model training on QA-Feedback: ``python -m fgjax.train_rm --config=configs/rm_tiny.py
--config.rm.name=r1|r2|r3|holistic``.

- ``r1`` (relevance, sub-sentences) and ``r2`` (factuality, sentences): a ``token_cls`` model
  with labels 0 = O, 1 = ERR read at each segment's end token; cross-entropy, plain or with
  class weights (``rm.class_weights = "balanced"``: inverse label frequency in the training
  set). Metrics: segment accuracy and F1 of the error class.
- ``r3`` (completeness, coverage-derived pairs) and ``holistic`` (human preferences): a
  ``seq_reg`` model (one score); loss ``-log sigmoid(r_preferred - r_other)``; metric: pairwise
  accuracy. After training, the mean / std of the score over the training answers is written to
  ``reward_stats.json`` in the HF export for the reward normalisation.

Logits and scores come from ``fgjax.rewards.fused.rm_outputs_on_response`` on the
``[RM prompt ; answer]`` rows of ``fgjax.data.rm_tokenize``: exactly the function and the
positions the PPO reward path reads. The first ``data.num_train`` examples train; examples of
other feedback records (at most ``data.num_eval``) are the held-out set. The run exports
``<workdir>/hf`` and writes ``<workdir>/rm_report.json`` (train and held-out metrics).
"""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fgjax import runner
from fgjax.config import RUNNER_SCHEMA, CommandLine, choice, integer, number, path
from fgjax.data import load_feedback_split, rm_builders, rm_tokenize
from fgjax.errors import ConfigError
from fgjax.rewards.fused import rm_outputs_on_response
from fgjax.trainer import supervised

RM_NAMES = ("r1", "r2", "r3", "holistic")
TOKEN_CLS = ("r1", "r2")
NUM_CLASSES = 2  # LABEL_O, LABEL_ERR
STATS_FILE = "reward_stats.json"

RM_SCHEMA = {
    **RUNNER_SCHEMA,
    **supervised.MODEL_SCHEMA,
    "data.dir": path("", "QA-Feedback folder with {split}_feedback.json", optional=False),
    "data.split": choice("dev", "feedback split", ("train", "dev", "test")),
    "data.num_train": integer(
        50, "first N examples (segment rows / pairs) train; 0 = the examples of the first "
        "(1 - data.heldout_fraction) of the records", minimum=0),
    "data.heldout_fraction": number(0.2, "with data.num_train = 0: share of records held out",
                                    minimum=0.0),
    "data.num_eval": integer(0, "held-out examples from other records; 0 = all", minimum=0),
    "data.num_train_eval": integer(0, "first N training examples evaluated for the train_* "
                                   "metrics; 0 = all", minimum=0),
    "data.splitter": choice(rm_builders.DEFAULT_SPLITTER, "sentence splitter",
                            ("syntok", "rules", "spacy")),
    "rm.name": choice("r1", "which reward model", RM_NAMES),
    "rm.class_weights": choice("none", "token_cls loss: plain CE or inverse-frequency weights",
                               ("none", "balanced")),
    "rm.batch_size": integer(8, "rows (pairs) per step; a multiple of data*fsdp", minimum=1),
    "rm.eval_batch_size": integer(16, "rows per evaluation batch", minimum=1),
    "rm.learning_rate": number(1e-3, "Adam learning rate", minimum=0.0),
    "rm.max_prompt_len": integer(64, "RM prompt tokens (the answer marker is always kept)",
                                 minimum=1),
    "rm.max_answer_len": integer(96, "answer tokens incl. eos", minimum=1),
}


def segment_arrays(records, name: str, tokenizer, max_prompt_len: int, max_answer_len: int,
                   splitter: str) -> tuple[list, dict]:
    """R1 / R2 examples of ``records`` and their arrays: ``prompt_ids/mask``,
    ``answer_ids/mask`` and ``labels`` at the segment-end answer tokens."""
    build = (rm_builders.build_relevance_examples if name == "r1"
             else rm_builders.build_factuality_examples)
    examples = build(records, splitter)
    tokens = rm_tokenize.tokenize_segment_examples(examples, tokenizer, max_prompt_len,
                                                   max_answer_len)
    arrays = supervised.split_prompt_answer(tokens.input_ids, tokens.attention_mask,
                                            max_prompt_len)
    arrays["labels"] = tokens.labels[:, max_prompt_len:]
    if tokens.num_segments_truncated:
        logging.warning("%d labelled segments end beyond max_answer_len=%d (no label)",
                        tokens.num_segments_truncated, max_answer_len)
    return examples, arrays


def training_records(num_records: int, heldout_fraction: float) -> int:
    """How many leading feedback records train when the last ``heldout_fraction`` of whole
    records is held out (``data.num_train = 0``)."""
    return int(num_records * (1.0 - heldout_fraction))


def build_examples(config, tokenizer) -> tuple[dict, dict, np.ndarray]:
    """``(train, held_out, record_of_train)`` arrays for ``rm.name`` (see the module doc)."""
    records = load_feedback_split(config.data.dir, config.data.split)
    name, splitter = config.rm.name, config.data.splitter
    p, a = config.rm.max_prompt_len, config.rm.max_answer_len
    if name in TOKEN_CLS:
        examples, arrays = segment_arrays(records, name, tokenizer, p, a, splitter)
    else:
        if name == "r3":
            coverage = rm_builders.build_coverage_records(records, splitter)
            examples = rm_builders.build_completeness_pairs(records, coverage)
        else:
            examples = rm_builders.build_holistic_pairs(records)
        pairs = rm_tokenize.tokenize_preference_pairs(examples, tokenizer, p, a)
        preferred = supervised.split_prompt_answer(pairs.preferred_ids, pairs.preferred_mask, p)
        other = supervised.split_prompt_answer(pairs.other_ids, pairs.other_mask, p)
        arrays = {**{f"preferred_{k}": v for k, v in preferred.items()},
                  **{f"other_{k}": v for k, v in other.items()},
                  "weight": np.ones(len(examples), np.float32)}
    record_index = np.array([e.record_index for e in examples])
    n = config.data.num_train
    if n == 0:  # hold out whole records: the last heldout_fraction of them
        records_kept = training_records(len(records), config.data.heldout_fraction)
        n = int(np.sum(record_index < records_kept))
    if n == 0:
        raise ConfigError(
            f"no {name} training example: the first records hold none of the "
            f"{len(examples)} built from {len(records)} records; lower data.heldout_fraction "
            "or use more feedback records"
        )
    if len(examples) <= n:
        raise ConfigError(
            f"config key 'data.num_train' = {config.data.num_train} leaves no held-out example "
            f"({len(examples)} {name} examples built from {len(records)} records); allowed: fewer"
        )
    held = np.flatnonzero(~np.isin(record_index, record_index[:n]))
    held = held[: config.data.num_eval or None]
    train = {k: v[:n] for k, v in arrays.items()}
    return train, {k: v[held] for k, v in arrays.items()}, record_index[:n]


def class_weights(labels: np.ndarray, mode: str) -> np.ndarray:
    """``[2]`` weights: ones, or ``count_total / (2 * count_class)`` over labelled segments."""
    if mode == "none":
        return np.ones(NUM_CLASSES, np.float32)
    counts = np.array([(labels == c).sum() for c in range(NUM_CLASSES)], np.float64)
    if np.any(counts == 0):
        raise ValueError(f"rm.class_weights='balanced' needs both labels; counts {counts}")
    return (counts.sum() / (NUM_CLASSES * counts)).astype(np.float32)


def make_token_cls_loss(model, pad_id: int, weights: np.ndarray):
    """Weighted CE over labelled segment ends; metrics are sums (correct, tp, fp, fn, count)."""
    weights = jnp.asarray(weights)

    def loss_fn(params, batch):
        logits = rm_outputs_on_response(
            model, params, batch["prompt_ids"], batch["prompt_mask"], batch["answer_ids"],
            batch["answer_mask"], pad_id,
        ).astype(jnp.float32)  # [B, A, 2], output for answer token j at [:, j]
        labels = batch["labels"]
        labelled = labels != rm_builders.IGNORE_LABEL
        target = jnp.where(labelled, labels, 0)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, target)
        w = jnp.where(labelled, weights[target], 0.0)
        loss = jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1e-6)
        predicted_error = jnp.argmax(logits, axis=-1) == rm_builders.LABEL_ERR
        error = target == rm_builders.LABEL_ERR
        count = lambda x: jnp.sum(x & labelled, dtype=jnp.float32)
        metrics = {
            "sum/count": count(jnp.ones_like(labelled)),
            "sum/correct": count(predicted_error == error),
            "sum/tp": count(predicted_error & error),
            "sum/fp": count(predicted_error & ~error),
            "sum/fn": count(~predicted_error & error),
            "sum/loss": jnp.sum(w * nll),
        }
        return loss, metrics

    return loss_fn


def pair_scores(model, params, batch, pad_id: int) -> tuple[jax.Array, jax.Array]:
    """Scores ``[N]`` of the preferred and the other answers (one forward pass of both)."""
    both = {
        k: jnp.concatenate([batch[f"preferred_{k}"], batch[f"other_{k}"]])
        for k in ("prompt_ids", "prompt_mask", "answer_ids", "answer_mask")
    }
    scores = rm_outputs_on_response(
        model, params, both["prompt_ids"], both["prompt_mask"], both["answer_ids"],
        both["answer_mask"], pad_id,
    ).astype(jnp.float32)  # fmt: skip
    half = scores.shape[0] // 2
    return scores[:half], scores[half:]


def make_pairwise_loss(model, pad_id: int):
    """Mean ``-log sigmoid(r_preferred - r_other)`` over weighted pairs; sums as metrics."""

    def loss_fn(params, batch):
        preferred, other = pair_scores(model, params, batch, pad_id)
        w = batch["weight"]
        nll = -jax.nn.log_sigmoid(preferred - other)
        metrics = {
            "sum/count": jnp.sum(w),
            "sum/correct": jnp.sum(w * (preferred > other)),
            "sum/loss": jnp.sum(w * nll),
        }
        return jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1e-6), metrics

    return loss_fn


def summarize(totals: dict) -> dict:
    """Accuracy, mean loss and (token_cls) error-class precision / recall / F1 from sums, and
    the accuracy of always predicting the more frequent class, the baseline to beat."""
    count = max(totals["sum/count"], 1.0)
    out = {"accuracy": totals["sum/correct"] / count, "loss": totals["sum/loss"] / count,
           "examples": totals["sum/count"]}
    if "sum/tp" in totals:
        tp, fp, fn = totals["sum/tp"], totals["sum/fp"], totals["sum/fn"]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        out.update(error_precision=precision, error_recall=recall,
                   error_f1=2 * precision * recall / (precision + recall) if tp else 0.0)
        errors = tp + fn
        out["majority_accuracy"] = max(errors, totals["sum/count"] - errors) / count
    return out


def score_statistics(model, params, train: dict, pad_id: int, batch_size: int) -> dict:
    """Mean / std of the score over the distinct training answers (pairs share answers)."""
    sides = [{name: train[f"{side}_{name}"] for name in ("prompt_ids", "prompt_mask",
                                                        "answer_ids", "answer_mask")}
             for side in ("preferred", "other")]
    rows = {k: np.concatenate([side[k] for side in sides]) for k in sides[0]}
    _, first = np.unique(np.concatenate([rows["prompt_ids"], rows["answer_ids"]], axis=1),
                         axis=0, return_index=True)
    distinct = {k: v[np.sort(first)] for k, v in rows.items()}
    count = len(first)
    padded = supervised.pad_rows(distinct, batch_size, {})
    fn = jax.jit(lambda p, b: rm_outputs_on_response(
        model, p, b["prompt_ids"], b["prompt_mask"], b["answer_ids"], b["answer_mask"], pad_id))
    scores = np.concatenate([
        np.asarray(jax.device_get(fn(params, {k: v[i : i + batch_size]
                                              for k, v in padded.items()})), np.float32)
        for i in range(0, len(padded["answer_ids"]), batch_size)
    ])[:count]  # fmt: skip
    return {"mean": float(scores.mean()), "std": float(scores.std()), "count": int(count)}


def run(command_line: CommandLine) -> dict:
    config = command_line.config
    supervised.validate_job_config(config, RM_SCHEMA, ("rm.batch_size", "rm.eval_batch_size"))
    cfg, name = config.rm, config.rm.name

    def texts():
        records = load_feedback_split(config.data.dir, config.data.split)
        return [t for r in records for t in (r.question, *r.predictions, r.gold)]

    tokenizer = supervised.tokenizer_from_config(config, texts)
    pad = tokenizer.pad_token_id
    train, held_out, _ = build_examples(config, tokenizer)
    token_cls = name in TOKEN_CLS
    head, num_labels = ("token_cls", NUM_CLASSES) if token_cls else ("seq_reg", 1)
    model, init_fn, loaded = supervised.model_from_config(
        config, tokenizer, head, num_labels, jax.random.key(config.seed)
    )
    if token_cls:
        weights = class_weights(train["labels"], cfg.class_weights)
        loss_fn = make_token_cls_loss(model, pad, weights)
        fill = {"labels": rm_builders.IGNORE_LABEL}
    else:
        loss_fn = make_pairwise_loss(model, pad)
        fill = {}
    trainer = supervised.build_trainer(config, model, init_fn, loaded, loss_fn, cfg.learning_rate)
    eval_sets = {
        "train": supervised.pad_rows(
            {k: v[: config.data.num_train_eval or None] for k, v in train.items()},
            cfg.eval_batch_size, fill),
        "heldout": supervised.pad_rows(held_out, cfg.eval_batch_size, fill),
    }

    def evaluate(params) -> dict:
        return {
            f"{split}_{metric}": value
            for split, arrays in eval_sets.items()
            for metric, value in summarize(
                supervised.summed_metrics(trainer, params, arrays, cfg.eval_batch_size)
            ).items()
        }

    result = runner.run_loop(
        config,
        command_line.workdir,
        trainer.init_state,
        trainer.step,
        lambda position: supervised.batch_iterator(train, cfg.batch_size, config.seed, position),
        eval_fn=lambda state: evaluate(state.params),
        resume_from=command_line.resume_from,
        abstract_state=trainer.abstract_state,
    )
    report = {"rm": name, "iterations": result.loop.iteration,
              "stop_reason": result.stop_reason, **evaluate(result.state.params)}
    if not token_cls:
        report["score_stats"] = score_statistics(model, result.state.params, train, pad,
                                                 cfg.eval_batch_size)
    export = supervised.export_hf(model, result.state.params, tokenizer, command_line.workdir)
    if jax.process_index() == 0:
        if not token_cls:
            with open(os.path.join(export, STATS_FILE), "w") as f:
                json.dump(report["score_stats"], f, indent=1)
        with open(os.path.join(command_line.workdir, "rm_report.json"), "w") as f:
            json.dump(report, f, indent=1)
    lines = [f"train_rm {name}: {result.loop.iteration} iterations"]
    for split in eval_sets:
        values = {k[len(split) + 1:]: v for k, v in report.items() if k.startswith(split + "_")}
        lines.append(f"  {split:8s} " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    print("\n".join(lines))
    logging.info("reward model exported to %s", export)
    return report


if __name__ == "__main__":
    runner.main(run, schema=RM_SCHEMA)
