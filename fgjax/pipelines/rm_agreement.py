"""How well R1 / R2 still agree with the exact oracle on a policy's current answers.

PPO moves the policy away from the answers the reward models were trained on; if the reward
models stop agreeing with the oracle there, the policy is being rewarded for the wrong thing.
``SegmentAgreement(answers)`` labels each answer with the oracle, builds R1 / R2 examples with
the QA-Feedback builders (the exact path ``fgjax.train_rm`` trains on) and returns each
model's segment accuracy and error-class F1 against those labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np

from fgjax import train_rm
from fgjax.data import qa_feedback_schema as schema
from fgjax.data import rm_builders, synthetic_qa
from fgjax.data.synthetic_world import SyntheticExample
from fgjax.models import load_pretrained
from fgjax.trainer import supervised

BATCH = 64  # rows per forward pass; the last batch is padded, so one compilation


class SegmentAgreement:
    def __init__(self, rm_dirs: Mapping[str, str], examples: Sequence[SyntheticExample],
                 tokenizer, max_prompt_len: int, max_answer_len: int, splitter: str = "rules"):
        unknown = set(rm_dirs) - set(train_rm.TOKEN_CLS)
        if unknown:
            raise ValueError(f"segment agreement is for {train_rm.TOKEN_CLS}, got {unknown}")
        self.examples, self.tokenizer, self.splitter = list(examples), tokenizer, splitter
        self.lengths = (max_prompt_len, max_answer_len)
        self.models = {}
        for name, directory in rm_dirs.items():
            model, params = load_pretrained(directory, "token_cls")
            loss_fn = train_rm.make_token_cls_loss(model, tokenizer.pad_token_id,
                                                   np.ones(train_rm.NUM_CLASSES, np.float32))
            self.models[name] = (jax.jit(lambda p, b, f=loss_fn: f(p, b)[1]), params)

    def __call__(self, answers: Sequence[str]) -> dict[str, float]:
        examples = self.examples[: len(answers)]
        raw = [synthetic_qa.feedback_record(e, [a] * schema.NUM_PREDICTIONS)
               for e, a in zip(examples, answers)]
        records = schema.parse_feedback(raw, "<policy answers>")
        metrics = {}
        for name, (metric_fn, params) in self.models.items():
            _, arrays = train_rm.segment_arrays(records, name, self.tokenizer, *self.lengths,
                                                self.splitter)
            if not len(arrays["labels"]):
                continue
            arrays = supervised.pad_rows(arrays, BATCH,
                                         {"labels": rm_builders.IGNORE_LABEL})
            totals: dict[str, float] = {}
            for start in range(0, len(arrays["labels"]), BATCH):
                batch = {k: v[start : start + BATCH] for k, v in arrays.items()}
                for key, value in jax.device_get(metric_fn(params, batch)).items():
                    totals[key] = totals.get(key, 0.0) + float(value)
            summary = train_rm.summarize(totals)
            metrics[f"rm_accuracy/{name}"] = summary["accuracy"]
            metrics[f"rm_error_f1/{name}"] = summary["error_f1"]
        return metrics
