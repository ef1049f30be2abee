"""QA evaluation of a policy: ``python -m fgjax.evaluate --config=configs/eval_tiny.py
--config.policy.path=DIR --workdir=OUT``.

Greedy answers to the prompts of ``{split}.json`` (``fgjax.rollout.sample``), then per answer:
ROUGE-Lsum F1 x 100 against the best reference (sentences on lines, ``fgjax.rouge``); R1 / R2
segment counts and errors at the sub-sentence / sentence ends the PPO reward path uses
(``fgjax.rewards.fused.score_model`` on device segment masks); R3's normalised score
``(score - mean) / std`` with the statistics of its ``reward_stats.json``; the length.
The set-level relevance / factuality ratios are error-free segments over all segments (weighted
by segment counts). Writes ``samples.jsonl`` (one record per prompt), ``summary.json`` and
``summary.txt`` (the table it prints) to the workdir. A reward model path left '' is skipped.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from fgjax import metrics, rollout, runner, segments
from fgjax.config import (
    COMPILATION_CACHE_SCHEMA,
    CommandLine,
    choice,
    integer,
    path,
    string,
    validate,
)
from fgjax.data import load_prompts_split, rm_builders
from fgjax.data.ppo_prompts import qa_prompt_arrays
from fgjax.errors import ConfigError
from fgjax.models import load_pretrained
from fgjax.rewards import RewardModelSpec, check_same_tokenizer
from fgjax.rewards.fused import score_model
from fgjax.rouge import best_rouge_lsum_f1
from fgjax.text import split_sentences
from fgjax.tokenizers import load_tokenizer
from fgjax.trainer.supervised import pad_rows

STATS_FILE = "reward_stats.json"
EVAL_SCHEMA = {
    **COMPILATION_CACHE_SCHEMA,
    "workdir": string("", "output folder; the --workdir flag overrides it"),
    "seed": integer(0, "seed of the (unused by greedy decoding) sampling key", minimum=0),
    "policy.path": path("", "HF directory of the policy (lm head)", optional=False),
    "tokenizer.path": path("", "tokenizer directory; '' = policy.path"),
    "data.dir": path("", "QA-Feedback folder with {split}.json", optional=False),
    "data.split": choice("dev", "split to evaluate", ("train", "dev", "test")),
    "data.num_prompts": integer(0, "first N prompts; 0 = all", minimum=0),
    "eval.batch_size": integer(16, "prompts per generation batch", minimum=1),
    "eval.max_prompt_len": integer(64, "policy prompt tokens kept (the first ones)", minimum=1),
    "eval.max_new_tokens": integer(64, "greedy answer length limit", minimum=1),
    "eval.splitter": choice("syntok", "sentence splitter for ROUGE lines", ("syntok", "rules",
                                                                          "spacy")),
    "rm.relevance": path("", "R1 export (token_cls, labels O/ERR); '' = skip"),
    "rm.factuality": path("", "R2 export (token_cls); '' = skip"),
    "rm.completeness": path("", f"R3 export (seq_reg, with {STATS_FILE}); '' = skip"),
    "rm.max_prompt_len": integer(128, "RM prompt tokens (answer marker kept)", minimum=1),
}
# name -> (config key, kind, level, batch input, prompt with passages)
REWARD_MODELS = {
    "relevance": ("relevance", "token_cls", "subsentence", "rm_question", False),
    "factuality": ("factuality", "token_cls", "sentence", "rm_passages", True),
    "completeness": ("completeness", "seq_reg", "sequence", "rm_passages", True),
}


def reward_specs(config) -> list[RewardModelSpec]:
    specs = []
    for name, (key, kind, level, input_name, _) in REWARD_MODELS.items():
        directory = config.rm[key]
        if not directory:
            continue
        extra = {"error_label": rm_builders.LABEL_ERR} if kind == "token_cls" else {}
        if kind == "seq_reg":
            stats_path = os.path.join(directory, STATS_FILE)
            if not os.path.isfile(stats_path):
                raise ConfigError(f"config key 'rm.{key}': {stats_path} is missing (written by "
                                  "fgjax.train_rm for r3 / holistic)")
            with open(stats_path) as f:
                stats = json.load(f)
            extra = {"mean": stats["mean"], "std": stats["std"]}
        specs.append(RewardModelSpec(name=name, kind=kind, level=level, checkpoint=directory,
                                     input=input_name, **extra))
    return specs


def prompt_arrays(config, tokenizer, prompts) -> dict:
    """Policy prompts ``prompt_*`` (as SFT and PPO build them) and the RM prompts
    ``rm_question_*`` / ``rm_passages_*``."""
    return qa_prompt_arrays(prompts, tokenizer, config.eval.max_prompt_len,
                            config.rm.max_prompt_len)


def make_generate_and_score(config, tokenizer, model, specs, rm_models):
    """Jitted ``fn(params, rm_params, batch) -> (response_ids, response_mask, per-RM outputs)``."""
    sampling = rollout.SamplingConfig(
        max_new_tokens=config.eval.max_new_tokens, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, greedy=True,
    )  # fmt: skip
    tables = segments.build_segment_tables(tokenizer, model.config.vocab_size).as_jax()
    key = jax.random.key(config.seed)

    def fn(params, rm_params, batch):
        sampled = rollout.sample(model, params, batch["prompt_ids"], batch["prompt_mask"], key,
                                 sampling)
        ends = segments.segment_end_masks(sampled.response_ids, sampled.response_mask, tables)
        levels = {"sentence": ends["sentence_end"], "subsentence": ends["subsentence_end"]}
        outputs = {}
        for spec in specs:
            reward = score_model(spec, rm_models[spec.name], rm_params[spec.name], batch,
                                 sampled.response_ids, sampled.response_mask, levels,
                                 tokenizer.pad_token_id)
            outputs[spec.name] = (
                {"segments": reward.n_segments, "errors": reward.n_errors}
                if spec.kind == "token_cls" else {"score": reward.score}
            )
        return sampled.response_ids, sampled.response_mask, outputs

    return jax.jit(fn)


def run(command_line: CommandLine) -> dict:
    config = command_line.config
    validate(config, EVAL_SCHEMA)
    tokenizer = load_tokenizer(config.tokenizer.path or config.policy.path)
    model, params = load_pretrained(config.policy.path, "lm")
    specs = reward_specs(config)
    check_same_tokenizer(tokenizer, {s.name: load_tokenizer(s.checkpoint) for s in specs})
    prompts = load_prompts_split(config.data.dir, config.data.split)
    prompts = prompts[: config.data.num_prompts or None]
    arrays = pad_rows(prompt_arrays(config, tokenizer, prompts), config.eval.batch_size, {})
    rm_models, rm_params = {}, {}
    for spec in specs:
        rm_models[spec.name], rm_params[spec.name] = load_pretrained(spec.checkpoint, spec.kind)
    fn = make_generate_and_score(config, tokenizer, model, specs, rm_models)
    split = lambda text: split_sentences(text, config.eval.splitter)
    samples = []
    size = config.eval.batch_size
    for start in range(0, len(prompts), size):
        batch = {k: v[start : start + size] for k, v in arrays.items()}
        ids, mask, outputs = jax.device_get(fn(params, rm_params, batch))
        for row in range(min(size, len(prompts) - start)):
            prompt = prompts[start + row]
            tokens = [t for t, m in zip(ids[row], mask[row]) if m and t != tokenizer.eos_token_id]
            answer = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            record = {
                "index": start + row, "question": prompt.question, "answer": answer,
                "references": list(prompt.answers), "length_tokens": int(mask[row].sum()),
                "length_words": len(answer.split()),
                "rouge_lsum": best_rouge_lsum_f1(prompt.answers, answer, split),
            }  # fmt: skip
            for name, values in outputs.items():
                for field, value in values.items():
                    record[f"{name}_{field}"] = value[row].item()
            samples.append(record)
    summary = summarize(samples, [s.name for s in specs])
    write_outputs(command_line.workdir, samples, summary)
    return summary


def summarize(samples: list[dict], rm_names: list[str]) -> dict:
    """Set-level metrics: means per sample; segment ratios weighted by segment counts."""
    mean = lambda key: float(np.mean([s[key] for s in samples]))
    summary = {"samples": len(samples), "rouge_lsum": mean("rouge_lsum"),
               "length_tokens": mean("length_tokens"), "length_words": mean("length_words")}
    for name in rm_names:
        if name == "completeness":
            summary["completeness"] = mean("completeness_score")
            continue
        total = sum(s[f"{name}_segments"] for s in samples)
        errors = sum(s[f"{name}_errors"] for s in samples)
        summary[f"{name}_ratio"] = (total - errors) / total if total else float("nan")
        summary[f"{name}_segments"] = total
    return summary


def write_outputs(workdir: str, samples: list[dict], summary: dict) -> None:
    table = "\n".join(f"{name:24s} {value:12.4f}" if isinstance(value, float)
                      else f"{name:24s} {value:12d}" for name, value in summary.items())
    print(table)
    if not metrics.is_writer():
        return
    os.makedirs(workdir, exist_ok=True)
    _write_atomically(os.path.join(workdir, "samples.jsonl"),
                      "".join(json.dumps(s) + "\n" for s in samples))
    _write_atomically(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=1))
    _write_atomically(os.path.join(workdir, "summary.txt"), table + "\n")


def _write_atomically(path_: str, text: str) -> None:
    """Temp file, then rename: a reader never sees half a file."""
    temporary = path_ + ".tmp"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path_)


if __name__ == "__main__":
    runner.main(run, schema=EVAL_SCHEMA)
