"""The synthetic fine-grained QA task: one import for the world, demonstrations and oracle.

- ``synthetic_world``: invented people, clause grammar, examples in the QA-Feedback prompt
  schema, tokenizer corpus (``make_world``, ``make_examples``, ``train_world_tokenizer``);
- ``synthetic_demos``: SFT answers with injected errors (``make_demonstrations``);
- ``synthetic_oracle``: exact feedback in the QA-Feedback schema, preferences and metrics
  (``annotate``, ``feedback_records``, ``evaluate_answers``).

``make_task(seed)`` draws everything a run needs from one seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from fgjax.data.synthetic_demos import DEFAULT_RATES, Demonstration, make_demonstrations
from fgjax.data.synthetic_oracle import (
    annotate,
    evaluate_answers,
    feedback_record,
    feedback_records,
    set_metrics,
)
from fgjax.data.synthetic_world import (
    SyntheticExample,
    World,
    example_from_prompt,
    make_examples,
    make_world,
    train_world_tokenizer,
)


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    world: World
    train: tuple[SyntheticExample, ...]
    eval: tuple[SyntheticExample, ...]
    demonstrations: tuple[Demonstration, ...]  # one per train example


def make_task(
    seed: int = 0,
    num_train: int = 512,
    num_eval: int = 128,
    num_people: int = 48,
    rates: Mapping[str, float] = DEFAULT_RATES,
) -> SyntheticTask:
    """A world, train / eval examples (independent draws) and SFT demonstrations, all from
    ``seed`` via ``np.random.SeedSequence``."""
    world_seed, train_seed, eval_seed, demo_seed = np.random.SeedSequence(seed).generate_state(4)
    world = make_world(int(world_seed), num_people)
    train = make_examples(world, num_train, int(train_seed))
    return SyntheticTask(
        world=world,
        train=tuple(train),
        eval=tuple(make_examples(world, num_eval, int(eval_seed))),
        demonstrations=tuple(make_demonstrations(train, int(demo_seed), rates)),
    )


__all__ = [
    "DEFAULT_RATES",
    "Demonstration",
    "SyntheticExample",
    "SyntheticTask",
    "World",
    "annotate",
    "evaluate_answers",
    "example_from_prompt",
    "feedback_record",
    "feedback_records",
    "make_demonstrations",
    "make_examples",
    "make_task",
    "make_world",
    "set_metrics",
    "train_world_tokenizer",
]
